"""What the Hub says of each entry of the list: the commit its revision points at, and that commit's files."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from functools import partial

from modal_jobs.decide.facts import HeldModel, HubAnswer, Kind, manifest_matches
from modal_jobs.errors import ModelFailed
from modal_jobs.hub import Hub
from modal_jobs.model_list import ModelEntry
from modal_jobs.waits import gather

log = logging.getLogger("modal_jobs")


def ask_hub(
    entries: Sequence[ModelEntry], hub: Hub, held: Mapping[str, HeldModel], cancel: threading.Event
) -> dict[str, HubAnswer | ModelFailed]:
    """The Hub's answer for each entry, or why there is none (logged as the model's failure): see `hub_answer`."""

    def one(entry: ModelEntry) -> HubAnswer:
        try:
            return hub_answer(entry, hub, held)
        except ModelFailed as exc:
            log.error("%s: failed: %s", entry.repo_id, exc)
            raise

    return gather({e.repo_id: partial(one, e) for e in entries}, cancel)


def hub_answer(entry: ModelEntry, hub: Hub, held: Mapping[str, HeldModel]) -> HubAnswer:
    """The commit the entry resolves to and its files: one request when the target is current, two otherwise.

    A commit's files never change, so when the target's manifest was written for this entry at the
    commit the revision points at now, its file list is the Hub's answer and the tree is not listed again.
    """
    commit = current_commit(entry, hub)
    item = held.get(entry.dirname)
    current = item.current if item is not None and item.kind is Kind.DIRECTORY else None
    manifest = current.manifest if current is not None else None
    if manifest is not None and manifest_matches(manifest, entry, commit):
        return HubAnswer(commit, manifest.files)
    return HubAnswer(commit, tuple(hub.list_files(entry, commit)))


def current_commit(entry: ModelEntry, hub: Hub) -> str:
    return entry.pinned_commit or hub.resolve(entry)
