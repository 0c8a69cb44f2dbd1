"""A new reader, again and again: `python tests/reader_probe.py MOUNT REPO_ID EXPECTED.json STOP_FILE OUT.json`.

Each round asks `modal_jobs.reader.model_path` for the model, as an inference container starting
at that moment would, and hashes every file of the directory it gets. EXPECTED maps a label to
the {path: sha256} a complete revision must hold; each round records the label it matched, or
what it got instead (an error, or a mix). It stops when STOP_FILE exists and writes the rounds.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from modal_jobs.reader import MANIFEST_NAME, POINTER_NAME, REVISIONS_DIR, ModelNotReady, model_path

# The cache's own files, which are not the model's.
OURS = frozenset({MANIFEST_NAME, POINTER_NAME, REVISIONS_DIR, ".model-cache.damaged", ".cache"})


def is_ours(top: str) -> bool:
    """The cache's files, and the hidden `.<name>.<random>.tmp` of a write about to be renamed into place."""
    return top in OURS or (top.startswith(".") and top.endswith(".tmp"))


def snapshot(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not is_ours(p.relative_to(directory).parts[0])
    }


def probe(mount: Path, repo_id: str, expected: dict[str, dict[str, str]]) -> str:
    try:
        found = model_path(mount, repo_id)
        files = snapshot(found)
    except ModelNotReady as exc:
        return f"error: {exc}"
    except OSError as exc:  # a file removed between finding the directory and reading it
        return f"error: {type(exc).__name__}: {exc}"
    for label, content in expected.items():
        if files == content:
            return label
    return f"mixed: {sorted(files)} at {found}"


def main() -> None:
    mount, repo_id, expected_path, stop, out = sys.argv[1:6]
    expected = json.loads(Path(expected_path).read_text())
    rounds = []
    while not Path(stop).exists():
        rounds.append(probe(Path(mount), repo_id, expected))
        time.sleep(0.005)
    rounds.append(probe(Path(mount), repo_id, expected))
    Path(out).write_text(json.dumps(rounds))


if __name__ == "__main__":
    main()
