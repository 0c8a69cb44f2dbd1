"""`python -m bench.bare_hub {cache,defaults} DIR WORKERS REPO…`: huggingface_hub alone, the "library" reference.

Each repo is fetched with `snapshot_download` into `DIR/<name>`, one repo after another, with
`WORKERS` file workers, and nothing is verified: what the cache adds on top of the library
(planning, hashing, the manifest) is what the comparison measures.

- `cache`: huggingface_hub set up exactly as the cache sets it up at start-up
  (`modal_jobs.deadlines.set_up_huggingface_hub`: the chunk size, the socket read size, the read timeout,
  hf_xet's buffers and timeouts), so that the library runs as fast as the cache lets it and not slower;
- `defaults`: the library as installed, nothing changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

SETTINGS = ("cache", "defaults")


def main(argv: list[str]) -> int:
    settings, target, workers, *repo_ids = argv
    if settings not in SETTINGS:
        raise SystemExit(f"settings must be one of {', '.join(SETTINGS)}, not {settings!r}")
    if settings == "cache":
        from modal_jobs.deadlines import Deadlines, set_up_huggingface_hub

        set_up_huggingface_hub(Deadlines.from_env())
    from huggingface_hub import snapshot_download

    for repo_id in repo_ids:
        snapshot_download(repo_id, local_dir=Path(target) / repo_id.split("/", 1)[1], max_workers=int(workers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
