"""File hashes in the Hub's own terms: sha256 for LFS files, the git blob sha1 for the rest."""

from __future__ import annotations

import hashlib
from pathlib import Path

from modal_jobs.model_dir import FileRecord


def hash_file(path: Path, algorithm: str, size: int) -> str:
    """The file's hash as `<algorithm>:<hex>`; `size` seeds the git blob header."""
    if algorithm == "sha256":
        digest = hashlib.sha256()
    elif algorithm == "git-sha1":
        digest = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    else:
        raise ValueError(f"unknown hash algorithm {algorithm!r}")
    with path.open("rb") as f:
        # file_digest reads in large blocks and hashlib releases the GIL, so threads hash in parallel.
        hashlib.file_digest(f, lambda: digest)
    return f"{algorithm}:{digest.hexdigest()}"


def check_file(path: Path, expected: FileRecord) -> str | None:
    """None when the file on disk is the one described, else what is wrong with it."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return "missing"
    if not path.is_file() or path.is_symlink():
        return "not a regular file"
    if st.st_size != expected.size:
        return f"size {st.st_size} != {expected.size}"
    algorithm = expected.hash.split(":", 1)[0]
    actual = hash_file(path, algorithm, expected.size)
    if actual != expected.hash:
        return f"{algorithm} mismatch"
    return None
