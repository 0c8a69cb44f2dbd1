"""The model list (`models.toml`): what gets cached, where, and at which revision.

```toml
[volume]
name = "qwen3-tts-models"      # the Modal Volume
mount = "/vol/models"          # where containers see it

[[model]]
repo_id = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
size = "1.7B"                  # a selection label; no label = shared, always included
revision = "main"              # branch, tag or 40-hex commit
include = ["*.json", "*.safetensors"]   # optional allow globs
exclude = ["*.bin"]                      # optional ignore globs
```

Each model lands at `<target>/<last part of repo_id>/`. Validation refuses anything that
could land outside the target or collide with another model, with a one-line message.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modal_jobs.errors import ModelListError, UsageError

DEFAULT_MODEL_LIST = Path("models.toml")
ALL_SIZES = ("both", "all")

# The Hub's own rule, in ASCII: letters, digits, '-', '_', '.', starting and ending with a
# letter or digit, no '--' or '..', at most 96 characters a part.
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_COMMIT = re.compile(r"[0-9a-f]{40}")

_TOP_KEYS = ("volume", "model")
_VOLUME_KEYS = ("name", "mount")
_MODEL_KEYS = ("repo_id", "size", "revision", "include", "exclude")


@dataclass(frozen=True)
class ModelEntry:
    """One model of the list, as validated."""

    repo_id: str
    size: str | None = None
    revision: str = "main"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None

    @property
    def dirname(self) -> str:
        """The model's directory on the target: the repo's name without its owner."""
        return self.repo_id.split("/", 1)[1]

    @property
    def pinned_commit(self) -> str | None:
        """The commit when the revision is one already, so no Hub request is needed to resolve it."""
        return self.revision if is_commit(self.revision) else None

    def to_wire(self) -> dict[str, Any]:
        """Plain JSON-able values, for a container."""
        return {
            "repo_id": self.repo_id,
            "size": self.size,
            "revision": self.revision,
            "include": list(self.include) if self.include is not None else None,
            "exclude": list(self.exclude) if self.exclude is not None else None,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ModelEntry:
        return cls(
            repo_id=data["repo_id"],
            size=data["size"],
            revision=data["revision"],
            include=tuple(data["include"]) if data["include"] is not None else None,
            exclude=tuple(data["exclude"]) if data["exclude"] is not None else None,
        )


@dataclass(frozen=True)
class VolumeSpec:
    name: str = "qwen3-tts-models"
    mount: str = "/vol/models"


@dataclass(frozen=True)
class ModelList:
    path: Path
    volume: VolumeSpec
    models: tuple[ModelEntry, ...]

    @property
    def sizes(self) -> tuple[str, ...]:
        """The selection labels in list order, without repeats."""
        return tuple(dict.fromkeys(m.size for m in self.models if m.size is not None))

    def owner_of(self, dirname: str) -> ModelEntry | None:
        return next((m for m in self.models if m.dirname == dirname), None)


def load_model_list(path: Path = DEFAULT_MODEL_LIST) -> ModelList:
    """Read and validate a model list; every problem is a one-line `ModelListError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelListError(
            f"{path}: no such model list; pass --model-list FILE or run from the repository root"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelListError(f"{path}: cannot read the model list ({exc})") from None
    return parse_model_list(text, path)


def parse_model_list(text: str, path: Path = DEFAULT_MODEL_LIST) -> ModelList:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelListError(f"{path}: not valid TOML: {exc}; fix the syntax at that line") from None

    _refuse_unknown_keys(data, _TOP_KEYS, f"{path}", "top-level table")
    volume = _parse_volume(data.get("volume", {}), path)
    raw_models = data.get("model", [])
    if not isinstance(raw_models, list) or not all(isinstance(m, dict) for m in raw_models):
        raise ModelListError(f"{path}: 'model' must be an array of tables; write each model as a [[model]] block")
    if not raw_models:
        raise ModelListError(f"{path}: the model list is empty; add at least one [[model]] with a repo_id")

    models = tuple(_parse_model(raw, i, path) for i, raw in enumerate(raw_models, start=1))
    _refuse_collisions(models, path)
    return ModelList(path=path, volume=volume, models=models)


def _parse_volume(raw: Any, path: Path) -> VolumeSpec:
    if not isinstance(raw, dict):
        raise ModelListError(f"{path}: 'volume' must be a table; write it as [volume] with name and mount")
    _refuse_unknown_keys(raw, _VOLUME_KEYS, f"{path}: [volume]", "[volume]")
    defaults = VolumeSpec()
    name = raw.get("name", defaults.name)
    mount = raw.get("mount", defaults.mount)
    if not isinstance(name, str) or not _VOLUME_NAME.fullmatch(name):
        raise ModelListError(
            f"{path}: [volume] name {name!r} is not a valid Modal Volume name; "
            "use letters, digits, '-', '_' or '.', at most 63 characters"
        )
    if not isinstance(mount, str) or not mount.startswith("/") or ".." in mount.split("/") or mount == "/":
        raise ModelListError(f"{path}: [volume] mount {mount!r} must be an absolute path below '/', like '/vol/models'")
    return VolumeSpec(name=name, mount=mount.rstrip("/"))


def _parse_model(raw: dict[str, Any], index: int, path: Path) -> ModelEntry:
    repo_id = raw.get("repo_id")
    where = f"{path}: model #{index}" + (f" ({repo_id})" if isinstance(repo_id, str) else "")
    _refuse_unknown_keys(raw, _MODEL_KEYS, where, "[[model]]")
    if repo_id is None:
        raise ModelListError(f'{where}: missing repo_id; add repo_id = "owner/name"')
    if not isinstance(repo_id, str) or not is_valid_repo_id(repo_id):
        raise ModelListError(
            f"{where}: repo_id {repo_id!r} is not 'owner/name'; use two parts of letters, digits, "
            "'-', '_' or '.', separated by one '/'"
        )
    size = raw.get("size")
    if size is not None:
        if not isinstance(size, str) or not size.strip() or size != size.strip():
            raise ModelListError(
                f'{where}: size must be a non-empty label such as "1.7B", or left out for a shared model'
            )
        if size.lower() in ALL_SIZES:
            raise ModelListError(f"{where}: size {size!r} is reserved (it selects every model); choose another label")
    revision = raw.get("revision", "main")
    if not is_valid_revision(revision):
        raise ModelListError(f"{where}: revision must be a branch, tag or 40-hex commit, without spaces")
    return ModelEntry(
        repo_id=repo_id,
        size=size,
        revision=revision,
        include=_parse_globs(raw, "include", where),
        exclude=_parse_globs(raw, "exclude", where),
    )


def checked_globs(value: object) -> tuple[str, ...] | None:
    """An entry's include or exclude, in models.toml or models.lock: absent, or a non-empty list of globs."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(g, str) and g for g in value):
        raise ValueError("not a non-empty list of globs")
    return tuple(value)


def _parse_globs(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    try:
        return checked_globs(raw.get(key))
    except ValueError:
        raise ModelListError(
            f'{where}: {key} must be a non-empty list of glob strings, like ["*.safetensors"]'
        ) from None


def _refuse_unknown_keys(table: dict[str, Any], allowed: Sequence[str], where: str, what: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ModelListError(f"{where}: unknown key {unknown[0]!r} in {what}; allowed keys are {', '.join(allowed)}")


def _refuse_collisions(models: Iterable[ModelEntry], path: Path) -> None:
    # Compared without case: two names differing only in case collide on some filesystems.
    seen: dict[str, ModelEntry] = {}
    for model in models:
        key = model.dirname.lower()
        if key in seen:
            raise ModelListError(
                f"{path}: {seen[key].repo_id} and {model.repo_id} would both land in "
                f"'{model.dirname}/'; keep one of them"
            )
        seen[key] = model


def is_valid_revision(revision: object) -> bool:
    """A branch, tag or commit as models.toml may name it: a non-empty string without spaces or control characters."""
    return isinstance(revision, str) and bool(revision) and not any(c.isspace() or ord(c) < 32 for c in revision)


def is_commit(value: object) -> bool:
    """A full commit id as the Hub writes it: 40 lowercase hex characters, and nothing that could name a path."""
    return isinstance(value, str) and _COMMIT.fullmatch(value) is not None


def is_valid_repo_id(repo_id: str) -> bool:
    parts = repo_id.split("/")
    return (
        len(parts) == 2
        and all(_REPO_PART.fullmatch(p) for p in parts)
        and not any(("--" in p or ".." in p) for p in parts)
    )


def select_models(model_list: ModelList, sizes: Sequence[str] = (), repo_ids: Sequence[str] = ()) -> list[ModelEntry]:
    """The models a run works on, in list order.

    No selection means everything. A size label selects its models plus the shared ones;
    `both`/`all` select everything; `--model` ids add exactly those models.
    """
    known_sizes = model_list.sizes
    for size in sizes:
        if size.lower() not in ALL_SIZES and size not in known_sizes:
            choices = ", ".join([*known_sizes, "both", "all"])
            raise UsageError(f"--model-size {size!r} is not in {model_list.path}; choose one of {choices}")
    known_ids = {m.repo_id for m in model_list.models}
    for repo_id in repo_ids:
        if repo_id not in known_ids:
            raise UsageError(
                f"--model {repo_id!r} is not in {model_list.path}; choose one of {', '.join(sorted(known_ids))}"
            )
    if not sizes and not repo_ids:
        return list(model_list.models)
    everything = any(s.lower() in ALL_SIZES for s in sizes)
    wanted_sizes = set(sizes)

    def chosen(model: ModelEntry) -> bool:
        if model.repo_id in repo_ids or everything:
            return True
        return bool(sizes) and (model.size is None or model.size in wanted_sizes)

    return [m for m in model_list.models if chosen(m)]
