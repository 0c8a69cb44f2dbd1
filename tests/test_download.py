"""`download` end to end: the real CLI process, the real huggingface_hub client, a local hub over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import pytest

from local_hub.server import LocalHub
from modal_jobs.deadlines import SOCKET_READ_BYTES
from modal_jobs.hub_errors import ANSWERED_ATTEMPTS
from modal_jobs.model_dir import LOCK_NAME, MANIFEST_NAME
from tests.conftest import (
    BIG,
    SMALL,
    TOKENIZER,
    Cli,
    Repos,
    assert_complete,
    cli_env,
    model_dir,
    repo_files,
    rows_by_repo,
    run_probed,
    tree,
)


def test_fresh_download_is_byte_identical_and_complete(cli: Cli, repos: Repos, target: Path):
    result = cli("download", "--model-size", "0.6B", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    rows = rows_by_repo(summary)
    assert set(rows) == {SMALL, TOKENIZER}
    assert {row["status"] for row in rows.values()} == {"downloaded"}
    assert rows[SMALL]["commit"] == repos.commits[SMALL]
    assert rows[SMALL]["files"] == 5
    assert rows[SMALL]["bytes"] == sum(len(b) for b in repos.files[SMALL].values())
    assert summary["total_bytes"] == rows[SMALL]["bytes"] + rows[TOKENIZER]["bytes"]
    for repo_id in (SMALL, TOKENIZER):
        assert_complete(target, repo_id, repos.files[repo_id])
    assert not model_dir(target, BIG).exists()
    # progress and logs went to stderr, one line per model start and finish
    assert f"{SMALL}: fetching 5 file(s)" in result.stderr
    assert f"{SMALL}: finished" in result.stderr


def test_rerun_transfers_nothing_and_asks_the_hub_nothing(cli: Cli, repos: Repos, target: Path):
    """The first download records each commit in models.lock; the next one plans from the lock alone."""
    assert cli("download").returncode == 0
    assert cli.model_list.with_suffix(".lock").is_file()
    models = [p for p in target.rglob("*") if p.name != LOCK_NAME]
    before = {p: p.stat().st_mtime_ns for p in models}
    cli.hub.reset_counts()
    result = cli("download", "--json")
    assert result.returncode == 0, result.stderr
    assert {row["status"] for row in json.loads(result.stdout)["models"]} == {"up-to-date"}
    assert cli.hub.count() == 0, cli.hub.requests
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.name != LOCK_NAME} == before


def test_pinned_commit_rerun_makes_no_request(cli: Cli, repos: Repos, model_list: Path):
    model_list.write_text(f'[[model]]\nrepo_id = "{SMALL}"\nsize = "0.6B"\nrevision = "{repos.commits[SMALL]}"\n')
    assert cli("download").returncode == 0
    cli.hub.reset_counts()
    result = cli("download")
    assert result.returncode == 0
    assert cli.hub.count() == 0


def test_dry_run_changes_nothing(cli: Cli, repos: Repos, target: Path):
    result = cli("download", "--model-size", "0.6B", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    rows = rows_by_repo(json.loads(result.stdout))
    assert rows[SMALL]["status"] == "fetch"
    assert rows[SMALL]["bytes"] == rows[SMALL]["fetch_bytes"] == sum(len(b) for b in repos.files[SMALL].values())
    assert not target.exists()
    assert cli.hub.count(kind="resolve") == 0

    assert cli("download", "--model-size", "0.6B").returncode == 0
    snapshot = tree(target)
    result = cli("download", "--dry-run", "--json")
    rows = rows_by_repo(json.loads(result.stdout))
    assert rows[SMALL]["status"] == "up-to-date"
    assert rows[BIG]["status"] == "fetch"
    assert tree(target) == snapshot


def corrupt_in_place(path: Path) -> None:
    """Flip bytes without changing size or mtime: what a bad disk or a stray writer leaves."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_corruption_found_by_verify_is_repaired_by_download(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    damaged = model_dir(target, SMALL) / "speech_tokenizer" / "model.safetensors"
    corrupt_in_place(damaged)

    result = cli("verify", "--json")
    assert result.returncode == 1
    rows = rows_by_repo(json.loads(result.stdout))
    assert rows[SMALL]["status"] == "damaged"
    assert "speech_tokenizer/model.safetensors (sha256 mismatch)" in rows[SMALL]["error"]
    assert rows[TOKENIZER]["status"] == "ok"
    assert "speech_tokenizer/model.safetensors" in result.stderr

    # the damage is remembered: the model is no longer complete
    listed = rows_by_repo(cli.json("list"))
    assert listed[SMALL]["status"] == "incomplete"

    cli.hub.reset_counts()
    result = cli("download", "--model-size", "0.6B", "--json")
    assert result.returncode == 0, result.stderr
    rows = rows_by_repo(json.loads(result.stdout))
    assert rows[SMALL]["status"] == "repaired"
    assert rows[TOKENIZER]["status"] == "up-to-date"
    assert cli.hub.count(kind="resolve", method="GET") == 1
    assert_complete(target, SMALL, repos.files[SMALL])
    assert cli("verify", "--model-size", "0.6B").returncode == 0


def test_a_file_served_wrong_is_fetched_again_then_fails_the_model(cli: Cli, repos: Repos, target: Path):
    cli.hub.corrupt(SMALL, "model.safetensors", times=1)
    result = cli("download", "--model-size", "0.6B", "--json")
    assert result.returncode == 0, result.stderr
    assert "model.safetensors failed verification (sha256 mismatch); downloading it again" in result.stderr
    assert_complete(target, SMALL, repos.files[SMALL])

    new_commit = cli.hub.commit(SMALL, {**repos.files[SMALL], "extra.safetensors": b"x" * 1000})
    assert cli("lock", "--upgrade").returncode == 0
    cli.hub.corrupt(SMALL, "extra.safetensors", times=None)
    summary = cli.json("download", "--model-size", "0.6B")
    assert summary["exit_code"] == 1
    row = rows_by_repo(summary)[SMALL]
    assert row["status"] == "failed"
    assert "extra.safetensors failed verification twice" in row["error"]
    # The failed revision was written beside the current one, which readers still get, whole.
    assert_complete(target, SMALL, repos.files[SMALL])
    unfinished = model_dir(target, SMALL).parent / new_commit
    assert not (unfinished / MANIFEST_NAME).exists()
    assert not (unfinished / "extra.safetensors").exists()


def test_models_are_fetched_one_after_another_while_their_bytes_flow(cli: Cli, repos: Repos, target: Path):
    """While a model's plain HTTP bytes flow, the next one waits: more at once only shares the same cores and
    link (docs/performance.md). One that goes quiet does not hold up the rest (test_field_failures' stall)."""
    cli.hub.throttle(4_000_000)  # each model's bytes flow for most of a second, a report every 0.1 s
    result = cli("download")
    assert result.returncode == 0, result.stderr
    order = [r.repo_id for r in cli.hub.requests if r.kind == "resolve"]
    assert set(order) == {BIG, SMALL, TOKENIZER}
    assert order == sorted(order, key=[BIG, SMALL, TOKENIZER].index), order
    for repo_id in (BIG, SMALL, TOKENIZER):
        assert_complete(target, repo_id, repos.files[repo_id])


def test_xet_transfers_do_not_hold_the_next_model_back(tmp_path: Path, model_list: Path, target: Path):
    """A model whose weights come through Xet lets the next one start while its bytes still flow: hf_xet
    reports from threads of its own, which do not hold the next model back (docs/performance.md)."""
    # 64 KiB xorbs, four fetched at once at 1 MB/s each, and hf_xet reporting every 50 ms: the first model's
    # 16 MB flow for about four seconds with a report far more often than every QUIET_SECONDS, so counted
    # as reads by Python, those reports would hold the second model back until the end.
    with LocalHub(tmp_path / "xet-hub", xet=True, chunks_per_xorb=1) as hub:
        files = repo_files(BIG, 1, 12_000_000)
        hub.commit(BIG, files)
        hub.commit(SMALL, repo_files(SMALL, 2, 2_000_000))
        hub.commit(TOKENIZER, repo_files(TOKENIZER, 3, 1_000_000))
        env = cli_env(hub, tmp_path)
        env["HF_XET_FIXED_DOWNLOAD_CONCURRENCY"] = "4"
        env["HF_XET_DATA_PROGRESS_UPDATE_INTERVAL"] = "50ms"
        cli = Cli(hub, model_list, target, env)
        hub.throttle(1_000_000)
        process = subprocess.Popen(
            cli.argv("download"), env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        sent_at_second_start = None
        try:
            deadline = time.monotonic() + 60
            while sent_at_second_start is None and process.poll() is None and time.monotonic() < deadline:
                if any(r.repo_id == SMALL and r.kind in ("resolve", "reconstruction") for r in list(hub.requests)):
                    sent_at_second_start = hub.bytes_sent
                    hub.throttle(None)  # seen: the rest at full speed
                time.sleep(0.005)
            _, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
    assert process.returncode == 0, stderr
    first = sum(len(data) for data in files.values())
    assert sent_at_second_start is not None, "the second model never asked for a file while the run went on"
    # Held back until the first model's transfers were over, it would start after all of their bytes.
    assert sent_at_second_start < first / 2, f"{sent_at_second_start} of the first model's {first} bytes"


def test_a_download_from_an_up_to_date_lock_fetches_without_the_hubs_api_client(cli: Cli, repos: Repos, target: Path):
    """The lock is the plan, so the files come through hf_hub_download alone: huggingface_hub's API client
    (`hf_api`, about half of its import time) is never imported, here as in a container's `--locked` run."""
    assert cli("lock").returncode == 0
    summary, imported, requests = run_probed(cli, "download")
    assert {row["repo_id"]: row["status"] for row in summary["models"]} == dict.fromkeys(repos.commits, "downloaded")
    assert "huggingface_hub.hf_api" not in imported
    assert requests == cli.hub.count(kind="resolve") > 0, "file requests only: no revision or tree asked"
    for repo_id in repos.commits:
        assert_complete(target, repo_id, repos.files[repo_id])


def test_killed_run_leaves_model_incomplete_and_next_run_finishes_it(cli: Cli, repos: Repos, target: Path):
    cli.hub.throttle(400_000)
    process = subprocess.Popen(
        cli.argv("download", "--model-size", "0.6B"),
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        partial: list[Path] = []
        while time.monotonic() < deadline and not partial:
            if cli.hub.bytes_sent > 100_000:
                partial = list(target.rglob("*.incomplete"))
            time.sleep(0.05)
        assert partial, "the download never started"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    assert not (model_dir(target, SMALL) / MANIFEST_NAME).exists()
    listed = rows_by_repo(cli.json("list"))
    assert listed[SMALL]["status"] == "incomplete"

    cli.hub.throttle(None)
    result = cli("download", "--model-size", "0.6B")
    assert result.returncode == 0, result.stderr
    assert_complete(target, SMALL, repos.files[SMALL])
    assert not list(target.rglob("*.incomplete"))
    assert not (model_dir(target, SMALL) / ".cache").exists()


def test_bursts_of_429_and_503_are_survived(cli: Cli, repos: Repos, target: Path):
    cli.hub.fail(SMALL, 503, times=2, kind="revision")
    cli.hub.fail(SMALL, 503, times=2, kind="tree")
    cli.hub.fail(SMALL, 429, times=2, kind="resolve", method="GET")
    cli.hub.fail(TOKENIZER, 500, times=3, kind="resolve", method="GET")
    result = cli("download", "--model-size", "0.6B")
    assert result.returncode == 0, result.stderr
    assert_complete(target, SMALL, repos.files[SMALL])
    assert_complete(target, TOKENIZER, repos.files[TOKENIZER])
    assert cli.hub.count(kind="revision", repo_id=SMALL) == 3
    assert cli.hub.count(kind="tree", repo_id=SMALL) == 3


def test_a_permanently_failing_repo_fails_alone(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    cli.hub.fail(BIG, 500, times=None, kind="revision")
    summary_json = tmp_path / "out" / "summary.json"
    summary_md = tmp_path / "out" / "summary.md"
    step_summary = tmp_path / "step-summary.md"
    step_summary.write_text("previous step\n")
    result = cli(
        "download",
        "--summary-json",
        str(summary_json),
        "--summary-md",
        str(summary_md),
        env={"GITHUB_STEP_SUMMARY": str(step_summary)},
    )
    assert result.returncode == 1, result.stderr
    assert summary_json.exists(), result.stderr
    rows = rows_by_repo(json.loads(summary_json.read_text()))
    assert rows[BIG]["status"] == "failed"
    assert "HTTP 500" in rows[BIG]["error"]
    assert rows[SMALL]["status"] == rows[TOKENIZER]["status"] == "downloaded"
    assert not (model_dir(target, BIG) / MANIFEST_NAME).exists()
    markdown = summary_md.read_text()
    assert f"| `{BIG}` | ❌ failed |" in markdown
    assert "HTTP 500" in markdown
    assert step_summary.read_text() == "previous step\n" + markdown


def test_revision_change_updates_the_model_and_drops_old_files(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    new_files = dict(repos.files[SMALL])
    del new_files["generation_config.json"]
    new_files["model.safetensors"] = new_files["model.safetensors"][::-1]
    new_files["tokenizer_config.json"] = b"{}\n"
    new_commit = cli.hub.commit(SMALL, new_files)
    # The lock holds the volume at the reviewed commit until it is upgraded.
    assert rows_by_repo(cli.json("list"))[SMALL]["status"] == "complete"
    assert cli("lock", "--upgrade").returncode == 0

    listed = rows_by_repo(cli.json("list"))
    assert listed[SMALL]["status"] == "stale"
    assert listed[TOKENIZER]["status"] == "complete"

    old_revision = model_dir(target, SMALL)
    result = cli("download", "--model-size", "0.6B", "--json")
    assert result.returncode == 0, result.stderr
    row = rows_by_repo(json.loads(result.stdout))[SMALL]
    assert row["status"] == "downloaded"
    assert row["commit"] == new_commit
    assert_complete(target, SMALL, new_files)
    # The old revision stays whole beside it, for readers that still load it.
    assert (old_revision / "generation_config.json").read_bytes() == repos.files[SMALL]["generation_config.json"]
    assert (old_revision / MANIFEST_NAME).is_file()


def test_gated_and_missing_repos_say_what_to_do(cli: Cli, repos: Repos):
    cli.hub.fail(SMALL, 401, times=None, kind="revision", gated=True)
    summary = cli.json("download", "--model-size", "0.6B")
    assert summary["exit_code"] == 1
    error = rows_by_repo(summary)[SMALL]["error"]
    assert "gated" in error and "HF_TOKEN" in error

    cli.hub.clear_faults()
    cli.model_list.write_text('[[model]]\nrepo_id = "Qwen/Does-Not-Exist"\n')
    summary = cli.json("download")
    error = rows_by_repo(summary)["Qwen/Does-Not-Exist"]["error"]
    assert "repository Qwen/Does-Not-Exist not found" in error

    cli.model_list.write_text(f'[[model]]\nrepo_id = "{SMALL}"\nrevision = "v9"\n')
    summary = cli.json("download")
    assert "revision 'v9' not found" in rows_by_repo(summary)[SMALL]["error"]


def test_token_is_used_and_never_shown(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    secret = "hf_" + "s3cr3t" * 6
    summary_json = tmp_path / "s.json"
    summary_md = tmp_path / "s.md"
    cli.hub.fail(BIG, 403, times=None, kind="revision", gated=True)
    result = cli(
        "download",
        "--summary-json",
        str(summary_json),
        "--summary-md",
        str(summary_md),
        env={"HF_TOKEN": secret},
    )
    assert result.returncode == 1
    assert any(auth == f"Bearer {secret}" for auth in cli.hub.authorizations)
    for text in (
        result.stdout,
        result.stderr,
        summary_json.read_text(),
        summary_md.read_text(),
        *(p.read_text() for p in target.rglob(MANIFEST_NAME)),
    ):
        assert secret not in text


def test_progress_is_a_byte_bar_on_a_terminal_and_lines_elsewhere(cli: Cli, repos: Repos):
    primary, secondary = os.openpty()
    try:
        process = subprocess.Popen(
            cli.argv("download", "--model", SMALL), env=cli.env, stdout=subprocess.DEVNULL, stderr=secondary
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
    finally:
        os.close(primary)
    terminal = b"".join(chunks).decode(errors="replace")
    assert SMALL in terminal and "B/s" in terminal and "\r" in terminal
    assert f"{SMALL}: downloading" not in terminal


@pytest.mark.parametrize("status", [500, 503])
def test_a_hub_answering_an_error_is_asked_six_times_per_file_not_more(cli: Cli, repos: Repos, status: int):
    """hf_hub_download asks a failed HEAD again itself; the cache turns that off, so its own policy is the only one."""
    cli.hub.fail(BIG, status, times=None, kind="resolve")
    result = cli("download", "--model", BIG)
    assert result.returncode == 1
    for path in repos.files[BIG]:
        asked = [r for r in cli.hub.requests if r.repo_id == BIG and r.path == path and r.kind == "resolve"]
        assert len(asked) == ANSWERED_ATTEMPTS, (path, [r.method for r in asked])
    assert f"the Hub answered HTTP {status}" in result.stderr
    assert "gave up after 6 attempts" in result.stderr


def test_huggingface_hub_reads_a_plain_http_body_up_to_a_mebibyte_at_a_time(hub: LocalHub, tmp_path: Path):
    """Set up as the cache sets it up, huggingface_hub takes up to 1 MiB from the socket a read, where httpcore's
    default is 64 KiB: a transfer's Python work is per read (docs/performance.md)."""
    from huggingface_hub import hf_hub_download

    data = repo_files(BIG, 1, 8_000_000)["model.safetensors"]
    hub.commit("org/weights", {"model.safetensors": data})
    reads: list[int] = []

    class Reads:
        """huggingface_hub's per-file bar, reduced to the byte counts it is given: one per socket read."""

        def __init__(self, **_: object) -> None:
            pass

        def __enter__(self) -> Reads:
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def update(self, n: int = 1) -> None:
            reads.append(n)

    fetched = hf_hub_download(
        "org/weights", "model.safetensors", local_dir=tmp_path / "out", endpoint=hub.url, tqdm_class=cast(Any, Reads)
    )
    assert Path(fetched).read_bytes() == data and sum(reads) == len(data)
    assert 64 * 1024 < max(reads) <= SOCKET_READ_BYTES, sorted(reads)[-5:]
