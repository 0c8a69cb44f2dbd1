"""File hashes in the Hub's own terms: sha256 for LFS files, the git blob sha1 for the rest.

A large file is hashed while it downloads (`StreamingHash`), so that verifying it does not read
every byte a second time after the transfer. That hash is an optimisation, never a verdict: when it
disagrees with the expected one, the file is read once more and only that reading can call it bad.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import threading
from pathlib import Path
from types import TracebackType
from typing import Protocol

from modal_jobs.model_dir import DOWNLOADER_STATE, FileRecord

log = logging.getLogger(__name__)

READ_BLOCK = 1 << 20
# How long the follower waits for more bytes when no report from the downloader wakes it first.
FOLLOW_WAIT = 0.05


class Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_digest(algorithm: str, size: int) -> Digest:
    """A hash object for `algorithm`; `size` seeds the git blob header."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "git-sha1":
        return hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    raise ValueError(f"unknown hash algorithm {algorithm!r}")


def hash_file(path: Path, algorithm: str, size: int) -> str:
    """The file's hash as `<algorithm>:<hex>`."""
    digest = new_digest(algorithm, size)
    with path.open("rb") as f:
        # file_digest reads in large blocks and hashlib releases the GIL, so threads hash in parallel.
        hashlib.file_digest(f, lambda: digest)  # type: ignore[arg-type, return-value]
    return f"{algorithm}:{digest.hexdigest()}"


def check_file(model_dir: Path, expected: FileRecord, known_hash: str | None = None) -> str | None:
    """None when the model's file is the one described, else what is wrong with it.

    `known_hash` is the hash taken while the bytes were written: it can only vouch for the file. When it
    disagrees, or is absent, the file is read. A file reached through a symlinked folder is not the
    model's file, whatever its bytes.
    """
    path = model_dir / expected.path
    try:
        if any(parent.is_symlink() for parent in _parents_below(model_dir, expected.path)):
            return "reached through a symlink"
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size != expected.size:
            return f"size {st.st_size} != {expected.size}"
        algorithm = expected.hash.split(":", 1)[0]
        actual = known_hash or hash_file(path, algorithm, expected.size)
        if known_hash is not None and known_hash != expected.hash:
            # What the follower read may not be what the writer left (a writer that rewrites, or writes out
            # of order): only the file itself can say it is bad.
            actual = hash_file(path, algorithm, expected.size)
            if actual == expected.hash:
                log.warning(
                    "%s: the hash taken during the download disagreed with the file, which is good; "
                    "the downloader may have changed how it writes",
                    expected.path,
                )
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if actual != expected.hash:
        return f"{algorithm} mismatch"
    return None


def _parents_below(model_dir: Path, relative: str) -> list[Path]:
    parts = relative.split("/")[:-1]
    return [model_dir.joinpath(*parts[: i + 1]) for i in range(len(parts))]


class StreamingHash:
    """Hashes a file while huggingface_hub writes it, by reading its `.incomplete` file as it grows.

    The result is used only when it provably covers the final file: the same inode, exactly `size`
    bytes, and no rewind during the transfer (huggingface_hub restarts a file when a server ignores
    `Range`). Otherwise `result` is None and the caller reads the file again, as it would anyway.

    The follower sleeps until the downloader's byte reports (`saw`) say another block has arrived:
    it reads once a block, and never polls an idle file. The reports only wake it early: without
    them it reads every `FOLLOW_WAIT` and at the end, and the hash is the same.
    """

    def __init__(self, model_dir: Path, record: FileRecord) -> None:
        self.record = record
        self.algorithm, self._etag = record.hash.split(":", 1)
        parent = Path(record.path).parent
        # huggingface_hub's private naming: <short hash>.<etag>.<random>.incomplete; the etag is our hash.
        self._folder = model_dir / DOWNLOADER_STATE / "huggingface" / "download" / parent
        self._digest = new_digest(self.algorithm, record.size)
        self._done = threading.Event()
        self._more = threading.Event()  # set by a report of another block, or at the end
        self._reported = 0
        self._read = 0
        self._inode: int | None = None
        self.rewound = False
        self._thread = threading.Thread(target=self._follow, name=f"hash {record.path}", daemon=True)

    def __enter__(self) -> StreamingHash:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._more.set()
        self._thread.join()

    def saw(self, n: int) -> None:
        """Called with each byte count huggingface_hub reports; a negative one is a rewind."""
        if n < 0:
            self.rewound = True
            return
        before, self._reported = self._reported, self._reported + n
        # The first report (the file exists now), then one wake-up per block: not one per socket read.
        if before == 0 or before // READ_BLOCK != self._reported // READ_BLOCK:
            self._more.set()

    def result(self, final: Path) -> str | None:
        try:
            inode = final.stat().st_ino
        except OSError:
            return None
        if self.rewound or self._inode != inode or self._read != self.record.size:
            return None
        return f"{self.algorithm}:{self._digest.hexdigest()}"

    def _follow(self) -> None:
        fd = self._open_incomplete()
        if fd is None:
            return
        # One buffer for every block: a new 1 MiB object per read cost a page fault per 4 KiB (150 000 for 1.5 GB).
        block = memoryview(bytearray(READ_BLOCK))
        try:
            self._inode = os.fstat(fd).st_ino
            while self._read < self.record.size:
                # Cleared before reading: a report that lands while this block is read wakes the next wait.
                self._more.clear()
                n = os.preadv(fd, [block[: self.record.size - self._read]], self._read)
                if n:
                    self._digest.update(block[:n])
                    self._read += n
                elif self._done.is_set() and not os.pread(fd, 1, self._read):
                    return  # the transfer ended short of the size: the file will be read again
                else:
                    self._more.wait(FOLLOW_WAIT)
        finally:
            os.close(fd)

    def _open_incomplete(self) -> int | None:
        while not self._done.is_set():
            self._more.clear()
            with contextlib.suppress(FileNotFoundError):
                found = list(self._folder.glob(f"*.{self._etag}.*.incomplete"))
                if len(found) == 1:
                    with contextlib.suppress(FileNotFoundError):
                        return os.open(found[0], os.O_RDONLY)
                if len(found) > 1:
                    return None  # not ours alone: do not guess
            self._more.wait(FOLLOW_WAIT)
        return None
