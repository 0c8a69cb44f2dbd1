"""Find a cached model's directory: the one call an inference service needs.

```python
from modal_jobs.reader import model_path

path = model_path("/vol/models", "Qwen/Qwen3-TTS-12Hz-0.6B-Base")   # the current revision
path = model_path("/vol/models", repo_id, commit="<40 hex>")         # exactly this commit, or an error
path = model_path("/vol/models", repo_id, lock="models.lock")        # the commit models.lock names
```

It reads a few small files, never writes and never touches the network, and imports nothing but
the standard library: an inference image can install this package alone, or copy this one file.
Every problem is one `ModelNotReady` whose message names the model, what is wrong and the fix.

The layout it reads (written by `python -m modal_jobs download`, see `modal_jobs.model_dir`):

```
<target>/<last part of repo_id>/
├── .current.json                 {"format": 1, "repo_id": …, "revision": "<dir>", "commit": …, "previous": …}
└── .revisions/<dir>/             one complete, immutable revision
    ├── .model-cache.json         its manifest: every file with size and hash, written last
    └── config.json, model.safetensors, …
```

A directory written before revisions existed (files and `.model-cache.json` directly in
`<target>/<name>/`, no `.current.json`) is read as it is, until the next download adopts it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# The names of the layout: `modal_jobs.model_dir` writes what this module reads.
POINTER_NAME = ".current.json"
REVISIONS_DIR = ".revisions"
MANIFEST_NAME = ".model-cache.json"
POINTER_FORMAT = 1
MANIFEST_FORMAT = 1
COMMAND = "python -m modal_jobs download"


class ModelNotReady(Exception):
    """The model cannot be loaded from this target: absent, incomplete, or at another commit than asked."""


def model_path(
    target: str | os.PathLike[str],
    repo_id: str,
    commit: str | None = None,
    *,
    lock: str | os.PathLike[str] | None = None,
) -> Path:
    """The directory to load `repo_id` from, complete and (when `commit` or `lock` says) at that commit.

    `target`: where the cache keeps models, such as the volume's mount (`/vol/models`) or a `--local-dir`.
    """
    if commit is None and lock is not None:
        commit = locked_commit(lock, repo_id)
    model_dir = Path(target) / repo_id.rsplit("/", 1)[-1]
    if not model_dir.is_dir():
        raise ModelNotReady(f"{repo_id}: absent from {target} (no {model_dir.name}/); run `{COMMAND}` to cache it")
    pointer = _read_json(model_dir / POINTER_NAME)
    if pointer is None:
        found = model_dir  # the layout before revisions: the manifest sits beside the files
        where = f"{model_dir}"
    else:
        revision = pointer.get("revision")
        if pointer.get("format") != POINTER_FORMAT or not _plain_name(revision):
            raise ModelNotReady(
                f"{repo_id}: {model_dir / POINTER_NAME} is not a pointer this reader knows "
                f"(format {pointer.get('format')!r}); upgrade the reader, or run `{COMMAND}`"
            )
        found = model_dir / REVISIONS_DIR / str(revision)
        where = f"{found}"
    manifest = _read_json(found / MANIFEST_NAME)
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT or manifest.get("repo_id") != repo_id:
        raise ModelNotReady(f"{repo_id}: incomplete at {where} (no manifest for it); run `{COMMAND}` to finish it")
    have = str(manifest.get("commit"))
    if commit is not None and have != commit:
        raise ModelNotReady(
            f"{repo_id}: {target} holds commit {have[:12]}, not {commit[:12]} as asked; "
            f"run `{COMMAND}` with the lock that names {commit[:12]}, or ask for {have[:12]}"
        )
    for record in manifest.get("files", []):
        path = found / str(record["path"])
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        if size != int(record["size"]):
            state = "missing" if size < 0 else f"{size} bytes, not {record['size']}"
            raise ModelNotReady(
                f"{repo_id}: incomplete at {where}: {record['path']} is {state}; run `{COMMAND}` to repair it"
            )
    return found


def locked_commit(lock: str | os.PathLike[str], repo_id: str) -> str:
    """The commit `models.lock` names for `repo_id` (TOML: read with the standard library's tomllib)."""
    import tomllib

    try:
        data = tomllib.loads(Path(lock).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelNotReady(
            f"{repo_id}: cannot read the lock {lock} ({exc}); ship models.lock with the service"
        ) from None
    for model in data.get("model", []):
        if isinstance(model, dict) and model.get("repo_id") == repo_id and isinstance(model.get("commit"), str):
            return str(model["commit"])
    raise ModelNotReady(f"{repo_id}: not in {lock}; add it to models.toml and run `python -m modal_jobs lock`")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name and name not in (".", "..") and "\x00" not in name
