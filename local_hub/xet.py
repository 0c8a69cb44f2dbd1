"""The Xet side of the local hub: files cut into chunks, chunks packed into xorbs, reconstructions.

`XetIndex` keeps which repos go through Xet and how the CAS holds each of their LFS blobs; the
routes (`local_hub.routes`) serve the read token, reconstructions and xorb ranges from it.

What the real `hf_xet` client needs to download a file, and no more (Hugging Face's Xet protocol,
download side):

- a file is cut into fixed chunks of `CHUNK_BYTES` (the real Hub cuts by content; the client does
  not care where the boundaries fall);
- `chunks_per_xorb` chunks make one xorb, stored once on disk in the wire format: for each chunk an
  8-byte header (version 0, compressed length, scheme 0 = none, uncompressed length; lengths 3 bytes
  little-endian) followed by the chunk's bytes, uncompressed;
- a reconstruction for a byte range of the file names, in order, the xorbs and chunk ranges that
  cover it, and for each xorb the URL and byte range to fetch (V2: `xorbs`; V1: `fetch_info`).

Hashes are opaque 64-hex names here: `hf_xet` 1.8 checks chunk headers and lengths, not hashes,
which is why the cache's own sha256 is what catches a bad chunk.

```
blobs/xorbs/<xorb hash>        one xorb, headers and chunks, served with sendfile
```
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from local_hub.repos import Blob

CHUNK_BYTES = 64 << 10
CHUNK_HEADER_BYTES = 8
CHUNKS_PER_XORB = 1024  # 64 MiB of data per xorb, as the real Hub packs them


@dataclass(frozen=True)
class Xorb:
    hash: str
    file: Path
    first_chunk: int  # index, in the file, of the xorb's first chunk
    chunk_sizes: tuple[int, ...]

    @property
    def data_bytes(self) -> int:
        return sum(self.chunk_sizes)

    def byte_offset(self, chunk: int) -> int:
        """Where chunk `chunk` (an index within this xorb) starts in the xorb's bytes."""
        return sum(CHUNK_HEADER_BYTES + size for size in self.chunk_sizes[:chunk])


@dataclass(frozen=True)
class XetFile:
    """One LFS blob as the CAS knows it: its Xet file hash and the xorbs that hold its bytes."""

    hash: str
    size: int
    sha256: str
    xorbs: tuple[Xorb, ...]

    def middle_data_offset(self, xorb: Xorb, start: int, length: int) -> int:
        """An offset into a served xorb range (from `start`, `length` bytes) that lands in chunk data, not a header."""
        position = 0
        middle = start + length // 2
        for size in xorb.chunk_sizes:
            data_start = position + CHUNK_HEADER_BYTES
            if middle < data_start + size:
                return max(middle, data_start) - start
            position = data_start + size
        return length // 2


def chunk_header(size: int) -> bytes:
    """The 8-byte header of an uncompressed chunk: version, compressed length, scheme, uncompressed length."""
    packed = struct.pack("<I", size)[:3]
    return b"\x00" + packed + b"\x00" + packed


def build_xet_file(blob: Path, sha256: str, size: int, xorb_dir: Path, chunks_per_xorb: int) -> XetFile:
    """Cut a blob into chunks and write its xorbs (once: names are derived from the content)."""
    xorb_dir.mkdir(parents=True, exist_ok=True)
    file_hash = _name(b"file", sha256, 0)
    xorbs: list[Xorb] = []
    chunk_count = -(-size // CHUNK_BYTES)
    with blob.open("rb") as source:
        for index, first in enumerate(range(0, chunk_count, chunks_per_xorb)):
            sizes = tuple(
                min(CHUNK_BYTES, size - chunk * CHUNK_BYTES)
                for chunk in range(first, min(first + chunks_per_xorb, chunk_count))
            )
            xorb_hash = _name(b"xorb", sha256, index)
            path = xorb_dir / xorb_hash
            if path.exists():
                source.seek(sum(sizes), 1)
            else:
                partial = path.with_suffix(".partial")
                with partial.open("wb") as out:
                    for chunk_size in sizes:
                        out.write(chunk_header(chunk_size))
                        out.write(source.read(chunk_size))
                partial.replace(path)
            xorbs.append(Xorb(xorb_hash, path, first, sizes))
    return XetFile(file_hash, size, sha256, tuple(xorbs))


def reconstruction(file: XetFile, start: int, end: int, xorb_url: str, version: int) -> dict[str, object]:
    """The reconstruction of bytes [start, end) of `file` (end capped at its size), V1 or V2.

    `xorb_url` holds `{hash}`, where each xorb's name goes.
    """
    first_chunk, last_chunk = start // CHUNK_BYTES, (end - 1) // CHUNK_BYTES
    terms: list[dict[str, object]] = []
    fetches: dict[str, list[dict[str, object]]] = {}
    for xorb in file.xorbs:
        lo = max(first_chunk, xorb.first_chunk) - xorb.first_chunk
        hi = min(last_chunk + 1, xorb.first_chunk + len(xorb.chunk_sizes)) - xorb.first_chunk
        if lo >= hi:
            continue
        chunks = {"start": lo, "end": hi}
        byte_range = {"start": xorb.byte_offset(lo), "end": xorb.byte_offset(hi) - 1}
        terms.append({"hash": xorb.hash, "unpacked_length": sum(xorb.chunk_sizes[lo:hi]), "range": chunks})
        url = xorb_url.replace("{hash}", xorb.hash)
        if version == 2:
            fetches[xorb.hash] = [{"url": url, "ranges": [{"chunks": chunks, "bytes": byte_range}]}]
        else:
            fetches[xorb.hash] = [{"range": chunks, "url": url, "url_range": byte_range}]
    body: dict[str, object] = {"offset_into_first_range": start - first_chunk * CHUNK_BYTES, "terms": terms}
    body["xorbs" if version == 2 else "fetch_info"] = fetches
    return body


class XetIndex:
    """Which repos go through Xet, and the files and xorbs the CAS holds for their LFS blobs."""

    def __init__(self, xorb_dir: Path, *, everywhere: bool, chunks_per_xorb: int) -> None:
        self.xorb_dir = xorb_dir
        self._everywhere = everywhere
        self._repos: set[str] = set()
        self._chunks_per_xorb = chunks_per_xorb
        self._files: dict[str, XetFile] = {}  # by the blob's sha256
        self._by_hash: dict[str, XetFile] = {}  # by the Xet file hash
        self._xorbs: dict[str, tuple[XetFile, Xorb]] = {}
        self._lock = threading.Lock()

    def enable(self, repo_id: str | None) -> None:
        """Every repo (None), or one more repo, goes through Xet from now on."""
        if repo_id is None:
            self._everywhere = True
        else:
            self._repos.add(repo_id)

    def disable(self) -> None:
        self._everywhere = False
        self._repos.clear()

    def uses(self, repo_id: str) -> bool:
        return self._everywhere or repo_id in self._repos

    def index(self, blobs: Iterable[Blob]) -> None:
        """Cut the LFS blobs not indexed yet into xorbs."""
        for blob in blobs:
            if not blob.lfs or blob.size == 0 or blob.sha256 in self._files:
                continue
            built = build_xet_file(blob.file, blob.sha256, blob.size, self.xorb_dir, self._chunks_per_xorb)
            with self._lock:
                self._files[blob.sha256] = built
                self._by_hash[built.hash] = built
                for xorb in built.xorbs:
                    self._xorbs[xorb.hash] = (built, xorb)

    def file_of(self, blob: Blob) -> XetFile | None:
        with self._lock:
            return self._files.get(blob.sha256) if blob.lfs else None

    def file_by_hash(self, file_hash: str) -> XetFile | None:
        with self._lock:
            return self._by_hash.get(file_hash)

    def xorb(self, xorb_hash: str) -> tuple[XetFile, Xorb] | None:
        """A xorb, with the file it is part of."""
        with self._lock:
            return self._xorbs.get(xorb_hash)


def _name(kind: bytes, sha256: str, index: int) -> str:
    return hashlib.sha256(b"%s %d %s" % (kind, index, sha256.encode())).hexdigest()
