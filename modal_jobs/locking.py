"""models.lock as runs use it: the desired state of every model, kept up to date, refused when stale, or taken as is.

`lock` resolves what models.toml changed and writes the lock; `lock --check` only compares. Every
other operation takes its desired state from `desired_state`, as `--locked` / `--frozen` ask.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from modal_jobs import models_lock
from modal_jobs.decide.facts import HeldModel, HubAnswer, as_facts
from modal_jobs.errors import ModelFailed, UsageError
from modal_jobs.hub import Hub
from modal_jobs.hub_answers import ask_hub
from modal_jobs.messages import LOCK_COMMAND, shorten
from modal_jobs.model_list import ModelEntry, ModelList
from modal_jobs.models_lock import lock_path
from modal_jobs.request import LockMode, Request
from modal_jobs.rows import checked_lock_row, lock_row, unlisted_lock_row
from modal_jobs.summary import Operation, Summary

log = logging.getLogger("modal_jobs")


def desired_state(
    request: Request,
    model_list: ModelList,
    hub: Hub,
    held: Mapping[str, HeldModel],
    cancel: threading.Event,
    *,
    write: bool,
    ask: bool = True,
) -> dict[str, HubAnswer | ModelFailed]:
    """What each model of the list must be, from models.lock: brought up to date first, or refused, or as it is.

    `write`: a run that changes the target records what it resolved (the first download creates the
    lock). `ask=False`: only what the lock says; entries it lacks are left out.
    """
    path = lock_path(model_list)
    if request.lock_mode is not LockMode.UPDATE:
        pinned = require_lock(request, model_list)
        missing = ModelFailed(f"not in {path.name}, which --frozen takes as it is; run `{LOCK_COMMAND}`")
        return {e.repo_id: m.answer if (m := pinned.get(e.repo_id)) else missing for e in model_list.models}
    locked = models_lock.read(path)
    problems = models_lock.disagreements(locked, model_list)
    answers: dict[str, HubAnswer | ModelFailed] = {m.repo_id: m.answer for m in locked.models} if locked else {}
    stale = models_lock.to_resolve(locked, model_list)
    if not stale or not ask:
        return {k: v for k, v in answers.items() if k not in {e.repo_id for e in stale}}
    resolved = ask_hub(stale, hub, held, cancel)
    answers.update(resolved)
    fresh = {k: v for k, v in resolved.items() if isinstance(v, HubAnswer)}
    if write and len(fresh) == len(resolved):
        models_lock.write(path, models_lock.updated(locked, model_list, fresh))
        log.info("%s was out of date (%s); updated it", path.name, shorten(problems))
    elif write:
        log.warning("%s is out of date (%s) and was not updated: a model did not resolve", path.name, shorten(problems))
    else:
        log.warning(
            "%s is out of date (%s); this run uses the Hub's answers for those models", path.name, shorten(problems)
        )
    return answers


def check_lock_first(request: Request, model_list: ModelList) -> None:
    """Before a target is opened: a lock that cannot be trusted, or that `--locked`/`--frozen` refuse, is exit 2.

    `lock` writes the lock again and `clear` never reads it: neither is stopped by it.
    """
    if request.operation in (Operation.LOCK, Operation.CLEAR):
        return
    if request.lock_mode is LockMode.UPDATE:
        models_lock.read(lock_path(model_list))
    else:
        require_lock(request, model_list)


def asks_hub(request: Request, model_list: ModelList) -> bool:
    """Whether the run may ask the Hub: verify and clear never do, nor does `list` when models.lock stands for the list.

    The CLI sets huggingface_hub up (and so imports it, most of its start-up) only for a run that may.
    """
    if request.operation in (Operation.VERIFY, Operation.CLEAR):
        return False
    if request.operation is Operation.LIST:
        # `--locked` and `--frozen` take every answer from the lock; so does an up-to-date one (`desired_state`).
        return request.lock_mode is LockMode.UPDATE and bool(
            models_lock.to_resolve(models_lock.read(lock_path(model_list)), model_list)
        )
    return True


def require_lock(request: Request, model_list: ModelList) -> models_lock.ModelsLock:
    """The lock `--locked` (which must match the list) or `--frozen` (which must exist) runs on; else exit 2."""
    path = lock_path(model_list)
    locked = models_lock.read(path)
    problems = models_lock.disagreements(locked, model_list)
    if locked is None or (problems and request.lock_mode is LockMode.LOCKED):
        raise UsageError(stale_lock_message(path, problems))
    return locked


def stale_lock_message(path: Path, problems: Sequence[str]) -> str:
    if not path.exists():
        return f"no {path.name} beside {path.with_suffix('.toml').name}; create it with `{LOCK_COMMAND}` and commit it"
    return f"{path.name} is out of date ({shorten(problems, 2)}); run `{LOCK_COMMAND}` and commit it"


def locked_answers(base: ModelList | None) -> dict[str, HubAnswer]:
    """What the lock beside the base list says of each base entry it still stands for."""
    locked = models_lock.read(lock_path(base), earlier_versions=True) if base is not None else None
    if base is None or locked is None:
        return {}
    return {e.repo_id: m.answer for e in base.models if (m := locked.get(e.repo_id)) and m.disagreement(e) is None}


def update_lock(
    model_list: ModelList, hub: Hub, request: Request, cancel: threading.Event, selected: Sequence[ModelEntry]
) -> Summary:
    """Resolve what models.toml changed and write models.lock; `--check` only compares.

    `--upgrade` also moves the branches and tags of the `selected` models (all of them without a
    selection), as `uv lock --upgrade-package` moves one package: the others keep their commits.
    """
    if (request.sizes or request.repo_ids) and request.check:
        raise UsageError("lock --check compares the whole lock with models.toml; drop --model-size and --model")
    if (request.sizes or request.repo_ids) and not request.upgrade:
        raise UsageError(
            "lock --model-size and --model choose what --upgrade moves (without it, lock resolves what "
            "models.toml changed, for every model): add --upgrade, or drop the selection"
        )
    path = lock_path(model_list)
    if request.check:
        return check_lock(model_list, models_lock.read(path), path)
    locked = lock_to_rewrite(path)
    moving = [e.repo_id for e in selected] if request.upgrade else []
    stale = models_lock.to_resolve(locked, model_list, moving)
    resolved = as_facts(ask_hub(stale, hub, {}, cancel)) if stale else {}
    fresh = {k: v for k, v in resolved.items() if isinstance(v, HubAnswer)}
    rows = [
        lock_row(entry, locked.get(entry.repo_id) if locked else None, resolved.get(entry.repo_id), str(path))
        for entry in model_list.models
    ]
    rows += [unlisted_lock_row(gone, str(path), check=False) for gone in _unlisted(locked, model_list)]
    if len(fresh) < len(resolved):
        return Summary(Operation.LOCK, str(path), tuple(rows), note=f"{path.name} not written: a model did not resolve")
    written = models_lock.write(path, models_lock.updated(locked, model_list, fresh))
    return Summary(
        Operation.LOCK, str(path), tuple(rows), note=f"wrote {path.name}" if written else f"{path.name} is up to date"
    )


def lock_to_rewrite(path: Path) -> models_lock.ModelsLock | None:
    """What `lock` starts from: a lock of any version it can trust; one it cannot is resolved anew, with a warning.

    A version-1 lock keeps its commits (rewriting it moves nothing). A lock refused as invalid holds
    nothing to keep: `lock` is the command its error names, so it must not refuse it too.
    """
    try:
        return models_lock.read(path, earlier_versions=True)
    except models_lock.InvalidLock as exc:
        log.warning("%s; resolving every model again", exc.problem)
        return None


def check_lock(model_list: ModelList, locked: models_lock.ModelsLock | None, path: Path) -> Summary:
    """`lock --check`: one row per model, failing where the lock does not stand for the list. Asks the Hub nothing."""
    problems = models_lock.disagreements(locked, model_list)
    for line in problems:
        log.error("%s", line)
    rows = [
        checked_lock_row(entry, locked.get(entry.repo_id) if locked else None, str(path)) for entry in model_list.models
    ]
    rows += [unlisted_lock_row(gone, str(path), check=True) for gone in _unlisted(locked, model_list)]
    return Summary(
        Operation.LOCK, str(path), tuple(rows), note=stale_lock_message(path, problems) if problems else None
    )


def _unlisted(locked: models_lock.ModelsLock | None, model_list: ModelList) -> list[models_lock.LockedModel]:
    """Models the lock has and the list no longer names."""
    listed = {e.repo_id for e in model_list.models}
    return [gone for gone in (locked.models if locked else ()) if gone.repo_id not in listed]
