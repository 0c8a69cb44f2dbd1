"""What `verify` hashes of a selected model, and what `clear` removes: the selection, or everything there.

`verify` judges every selected model of the list (all of them without a selection), present or not;
`clear` without a selection removes whatever stands on the target.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from modal_jobs.decide.facts import HeldModel, HeldRevision, Kind
from modal_jobs.model_list import ALL_SIZES, ModelEntry


def verifiable(entry: ModelEntry, held: HeldModel | None) -> HeldRevision | None:
    """The revision verify hashes: the current one of a real directory, with the cache's manifest for this repo."""
    if held is None or held.kind is not Kind.DIRECTORY or held.repo_id != entry.repo_id:
        return None
    current = held.current
    return current if current is not None and current.manifest is not None else None


def clear_selection(
    entries: Sequence[ModelEntry], sizes: Sequence[str], repo_ids: Sequence[str]
) -> list[ModelEntry] | None:
    """What a selective clear removes (None: nothing selected, so everything on the target).

    A size label takes its own models, not the shared ones the others need.
    """
    if not sizes and not repo_ids:
        return None
    if any(size.lower() in ALL_SIZES for size in sizes):
        return list(entries)
    return [e for e in entries if e.size is not None or e.repo_id in repo_ids]


def cleared_names(top: Collection[str], selection: Sequence[ModelEntry] | None) -> list[str]:
    """The top-level names a clear removes, in order: the selection's that are there, or all of them."""
    return sorted(top) if selection is None else [e.dirname for e in selection if e.dirname in top]
