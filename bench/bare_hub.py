"""`python -m bench.bare_hub DIR WORKERS REPO…`: huggingface_hub alone, the benchmark's "library" reference.

Each repo is fetched with `snapshot_download` into `DIR/<name>`, one repo after another, with the
cache's number of file workers, and nothing is verified: what the cache adds on top of the library
(planning, hashing, the manifest) is what the comparison measures.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from huggingface_hub import snapshot_download

    target, workers, *repo_ids = argv
    for repo_id in repo_ids:
        snapshot_download(repo_id, local_dir=Path(target) / repo_id.split("/", 1)[1], max_workers=int(workers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
