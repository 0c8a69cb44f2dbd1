"""The repos the benchmark serves, shaped like the model list's, and the targets it measures on.

At `scale` 1 the three repos hold about 1.5 GB: the real repos' large `.safetensors` at a fifth of
their size, their small JSON/text files at full size, and `small_files` extra small files each, so
that per-file costs show. Blobs are written to disk in chunks and handed to the hub as paths:
nothing large is ever held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from local_hub.repos import random_bytes, write_random_file
from local_hub.server import LocalHub
from modal_jobs.disk import write_manifest, write_pointer
from modal_jobs.model_dir import FileRecord, Pointer, new_manifest, revision_dir

MB = 1_000_000

BIG = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
SMALL = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
TOKENIZER = "Qwen/Qwen3-TTS-Tokenizer-12Hz"

# The text files of a Qwen3-TTS repo, at their real sizes: git-sha1 verified, not LFS.
TEXT_FILES = {
    ".gitattributes": 1_600,
    "README.md": 12_000,
    "config.json": 4_200,
    "generation_config.json": 240,
    "merges.txt": 1_670_000,
    "preprocessor_config.json": 330,
    "tokenizer_config.json": 7_300,
    "vocab.json": 2_780_000,
    "speech_tokenizer/config.json": 2_100,
    "speech_tokenizer/configuration.json": 90,
    "speech_tokenizer/preprocessor_config.json": 330,
}
SPEECH_TOKENIZER = 136 * MB  # 682 MB in the real repos


@dataclass(frozen=True)
class FileSpec:
    path: str
    size: int


@dataclass(frozen=True)
class RepoSpec:
    repo_id: str
    files: tuple[FileSpec, ...]


@dataclass(frozen=True)
class ServedFile:
    url: str
    dest: str  # `<model dir>/<path>`, where the cache puts it
    size: int
    sha256: str


@dataclass(frozen=True)
class Workload:
    """Repos published on the hub, with the model list that selects them."""

    model_list: Path
    repo_ids: tuple[str, ...]
    files: tuple[ServedFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def model_list_repos(scale: float, small_files: int) -> list[RepoSpec]:
    """The model list's three repos: 1.7B and 0.6B with weights and a speech tokenizer, and the tokenizer."""

    def scaled(size: int) -> int:
        return max(1, int(size * scale))

    def extras(prefix: str) -> list[FileSpec]:
        # Prompt-sized JSON files from 256 B to 64 KB: the per-file cost without the per-byte one.
        return [FileSpec(f"{prefix}/item_{i:04d}.json", 256 << (i % 9)) for i in range(small_files)]

    text = [FileSpec(path, size) for path, size in TEXT_FILES.items()]
    return [
        RepoSpec(
            BIG,
            (
                *text,
                FileSpec("model.safetensors", scaled(760 * MB)),
                FileSpec("speech_tokenizer/model.safetensors", scaled(SPEECH_TOKENIZER)),
                *extras("samples"),
            ),
        ),
        RepoSpec(
            SMALL,
            (
                *text,
                FileSpec("model.safetensors", scaled(360 * MB)),
                FileSpec("speech_tokenizer/model.safetensors", scaled(SPEECH_TOKENIZER)),
                *extras("samples"),
            ),
        ),
        RepoSpec(
            TOKENIZER,
            (
                FileSpec(".gitattributes", 1_600),
                FileSpec("README.md", 9_000),
                FileSpec("config.json", 2_100),
                FileSpec("preprocessor_config.json", 330),
                FileSpec("model.safetensors", scaled(SPEECH_TOKENIZER)),
                *extras("codebooks"),
            ),
        ),
    ]


def memory_repo(repo_id: str, files: int, size: int) -> RepoSpec:
    """`files` weight shards of `size` bytes each: enough to keep every download worker busy."""
    return RepoSpec(
        repo_id, (FileSpec("config.json", 512), *(FileSpec(f"model-{i:05d}.safetensors", size) for i in range(files)))
    )


def publish(hub: LocalHub, repos: Sequence[RepoSpec], scratch: Path, model_list: Path, seed: int) -> Workload:
    """Commit each repo to the hub, file by file from disk, and write a model list selecting them."""
    served: list[ServedFile] = []
    for r, repo in enumerate(repos):
        sources: dict[str, bytes | Path] = {}
        for f, spec in enumerate(repo.files):
            sources[spec.path] = write_random_file(scratch / repo.repo_id / spec.path, spec.size, seed + 1000 * r + f)
        commit = hub.commit(repo.repo_id, sources)
        for source in sources.values():
            assert isinstance(source, Path)
            source.unlink()  # the hub keeps its own copy as a blob
        tree = hub.repos[repo.repo_id].commits[commit]
        dirname = repo.repo_id.split("/", 1)[1]
        served += [
            ServedFile(
                url=f"{hub.url}/{repo.repo_id}/resolve/{commit}/{quote(spec.path)}",
                dest=f"{dirname}/{spec.path}",
                size=spec.size,
                sha256=tree[spec.path].sha256,
            )
            for spec in repo.files
        ]
    write_model_list(model_list, [r.repo_id for r in repos])
    return Workload(model_list, tuple(r.repo_id for r in repos), tuple(served))


def write_model_list(path: Path, repo_ids: Iterable[str]) -> Path:
    models = "".join(f'\n[[model]]\nrepo_id = "{repo_id}"\n' for repo_id in repo_ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[volume]\nname = "bench"\nmount = "/vol/models"\n{models}')
    return path


def publish_complete_target(
    hub: LocalHub, repo_ids: Sequence[str], files_per_model: int, target: Path, model_list: Path, seed: int
) -> int:
    """Small-file repos on the hub and, in `target`, each one complete in its revision, as a download leaves it.

    Built directly rather than downloaded: fetching tens of thousands of files one request at a time
    would take minutes and measure the download, not `list`. Returns the number of files written.
    """
    for r, repo_id in enumerate(repo_ids):
        content = {
            f"shard_{i // 1000:02d}/item_{i:05d}.json": random_bytes(
                100 + (i * 37) % 1900, seed + r * files_per_model + i
            )
            for i in range(files_per_model)
        }
        commit = hub.commit(repo_id, content)
        model_dir = target / repo_id.split("/", 1)[1]
        revision = revision_dir(model_dir, commit)
        tree = hub.repos[repo_id].commits[commit]
        for path, data in content.items():
            (revision / path).parent.mkdir(parents=True, exist_ok=True)
            (revision / path).write_bytes(data)
        records = [FileRecord(path, len(data), f"git-sha1:{tree[path].sha1}") for path, data in content.items()]
        write_manifest(revision, new_manifest(repo_id, "main", commit, records, None, None))
        write_pointer(model_dir, Pointer(repo_id, commit, commit))
    write_model_list(model_list, repo_ids)
    return files_per_model * len(repo_ids)


def curl_config(files: Iterable[ServedFile], into: Path) -> str:
    """A curl `--config` fetching every file, one after another, over one connection."""
    lines = []
    for f in files:
        lines.append(f"url = {json.dumps(f.url)}")
        lines.append(f"output = {json.dumps(str(into / f.dest))}")
    return "\n".join(lines) + "\n"


def expected_sha256(files: Iterable[ServedFile], into: Path) -> Mapping[str, str]:
    return {str(into / f.dest): f.sha256 for f in files}
