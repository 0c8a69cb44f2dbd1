"""Failures met in the field, tried as a person would: the CLI as its own process against the local hub.

A transfer that stalls, a machine with no network, a read-only or mistyped target, a file deleted from a
complete model, a stop at any moment of any command. The rule throughout: the run ends within a bounded
time, says what happened in one line per problem, never prints a traceback, and never calls a model
complete that is not.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from modal_jobs.deadlines import Deadlines
from modal_jobs.disk import write_manifest
from modal_jobs.model_dir import LOCK_NAME, MANIFEST_NAME, POINTER_NAME, FileRecord, new_manifest
from modal_jobs.summary import human_bytes
from tests.conftest import (
    BIG,
    MODEL_LIST,
    SMALL,
    TOKENIZER,
    Cli,
    Repos,
    assert_complete,
    assert_not_loadable,
    model_dir,
    mount_tmpfs,
    rows_by_repo,
)

WEIGHTS = "model.safetensors"
MIB = 1 << 20
GIB = 1 << 30


def assert_no_traceback(*outputs: str) -> None:
    for output in outputs:
        assert "Traceback" not in output, output


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry below `path` (the lock included) with its mode, mtime and bytes: "nothing changed" means equal.

    One lstat a name, and a read only where there are bytes to read: it runs over 100,000 files.
    """
    entries = {}
    for directory, dirnames, filenames in os.walk(path):  # never into a linked directory
        prefix = os.path.relpath(directory, path) + os.sep if directory != str(path) else ""
        for name in dirnames + filenames:
            full = os.path.join(directory, name)
            st = os.lstat(full)
            linked_file = stat.S_ISLNK(st.st_mode) and os.path.isfile(full)
            content = Path(full).read_bytes() if (stat.S_ISREG(st.st_mode) and st.st_size) or linked_file else b""
            entries[prefix + name] = (st.st_mode, st.st_mtime_ns, content)
    return entries


# -- stalls and no network ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["http", "xet"])
def test_a_stalled_transfer_fails_its_model_in_bounded_time_while_the_others_finish(
    cli: Cli, repos: Repos, target: Path, path: str
):
    """A body that goes silent with the connection open fails its model within the stall deadline (plus
    the downloader's own last try), quietly; the models beside it are not held up."""
    if path == "xet":
        cli.hub.enable_xet()
    cli.hub.stall(SMALL, WEIGHTS, at=500_000)
    deadlines = Deadlines(stall_seconds=20)
    started_wall = time.time()
    started = time.monotonic()
    result = cli("download", "--stall-timeout", str(deadlines.stall_seconds), "--json", timeout=240)
    seconds = time.monotonic() - started

    assert result.returncode == 1, result.stderr
    # The deadline, then at most one call's last try; the margin is start-up and the other models on a busy machine.
    bound = deadlines.stall_seconds + deadlines.longest_call + 20
    assert seconds < bound, f"the stalled model took {seconds:.0f}s to fail, over {bound:.0f}s"
    rows = rows_by_repo(json.loads(result.stdout))
    assert rows[SMALL]["status"] == "failed"
    assert WEIGHTS in rows[SMALL]["error"]
    assert rows[BIG]["status"] == rows[TOKENIZER]["status"] == "downloaded"
    assert_complete(target, BIG, repos.files[BIG])
    assert_complete(target, TOKENIZER, repos.files[TOKENIZER])
    assert not (model_dir(target, SMALL) / MANIFEST_NAME).exists()
    assert not list(target.rglob("*.incomplete"))
    # Models run side by side: the tokenizer, after the stuck model in plan order, finished long before it failed.
    finished = (model_dir(target, TOKENIZER) / MANIFEST_NAME).stat().st_mtime - started_wall
    assert finished < seconds / 2, f"the tokenizer finished {finished:.0f}s into a {seconds:.0f}s run"

    assert_no_traceback(result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) < 40, result.stderr
    if path == "http":
        # Each of huggingface_hub's warnings once: one per stalled request of the file, not two.
        stalled = [r for r in cli.hub.requests if r.repo_id == SMALL and r.path == WEIGHTS and r.method == "GET"]
        warnings = [line for line in lines if "Error while downloading from" in line]
        assert len(warnings) == len(stalled), result.stderr
        assert "stalled" in rows[SMALL]["error"]


@contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening, so no one else can take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_no_network_fails_every_model_once_the_connect_timeout_has_passed(cli: Cli, repos: Repos, target: Path):
    """The run gives up together, on the run's deadline (here 3 s, by default 10), whatever the number of models."""
    with closed_port() as port:
        started = time.monotonic()
        env = {"HF_ENDPOINT": f"http://127.0.0.1:{port}"}
        result = cli("download", "--connect-timeout", "3", "--json", env=env, timeout=60)
        seconds = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    # Retries go on up to the deadline and stop there; the margin is start-up on a loaded machine.
    assert 3 <= seconds < 3 + 10, f"an offline run took {seconds:.1f}s to give up"
    rows = rows_by_repo(json.loads(result.stdout))
    assert {row["status"] for row in rows.values()} == {"failed"}
    for repo_id, row in rows.items():
        assert "cannot reach the Hub" in row["error"], row
        failed = [line for line in result.stderr.splitlines() if line.startswith(f"{repo_id}: failed:")]
        assert len(failed) == 1 and "cannot reach the Hub" in failed[0], result.stderr
    # One line says the Hub is out of reach, not one per model and attempt.
    assert sum("trying again" in line for line in result.stderr.splitlines()) == 1, result.stderr
    assert len(result.stderr.splitlines()) <= 5, result.stderr
    assert_no_traceback(result.stderr)
    assert cli.hub.count() == 0


# -- read-only, missing and mistyped targets ----------------------------------------------------------


@pytest.fixture
def read_only_target(cli: Cli, repos: Repos, tmp_path: Path) -> Iterator[Path]:
    """A tmpfs filled by a real download of 0.6B, one weight byte then flipped, remounted read-only."""
    with mount_tmpfs(tmp_path / "ro", 64 * MIB) as disk:
        cli.target = disk.path
        assert cli("download", "--model-size", "0.6B").returncode == 0
        weights = model_dir(disk.path, SMALL) / WEIGHTS
        data = bytearray(weights.read_bytes())
        data[1000] ^= 0xFF
        weights.write_bytes(bytes(data))
        disk.remount(read_only=True)
        yield disk.path


def one_line_naming(result: subprocess.CompletedProcess[str], target: Path) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(target) in lines[0]
    assert_no_traceback(result.stdout, result.stderr)
    return lines[0]


def test_list_and_verify_work_on_a_read_only_target(cli: Cli, read_only_target: Path):
    before = snapshot(read_only_target)
    listed = cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {row["status"] for row in json.loads(listed.stdout)["models"] if row["repo_id"] != BIG} == {"complete"}

    verified = cli("verify", "--json")
    assert verified.returncode == 1
    rows = rows_by_repo(json.loads(verified.stdout))
    assert rows[TOKENIZER]["status"] == "ok"
    assert rows[SMALL]["status"] == "damaged"
    assert f"{WEIGHTS} (sha256 mismatch)" in rows[SMALL]["error"]
    assert "read-only" in rows[SMALL]["error"] and "could not mark" in rows[SMALL]["error"]
    assert "read-only" in verified.stderr
    assert_no_traceback(listed.stderr, verified.stderr)
    assert snapshot(read_only_target) == before


def test_download_and_clear_refuse_a_read_only_target_in_one_line(cli: Cli, read_only_target: Path):
    before = snapshot(read_only_target)
    for argv in (("download", "--model-size", "0.6B"), ("download",), ("clear", "--yes")):
        result = cli(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert "read-only" in one_line_naming(result, read_only_target)

    cli.target = read_only_target / "new-folder"
    result = cli("download", "--model-size", "0.6B")
    assert result.returncode == 2, result.stderr
    one_line_naming(result, cli.target)
    assert snapshot(read_only_target) == before


def test_list_of_a_missing_directory_reports_every_model_missing_and_creates_nothing(
    cli: Cli, repos: Repos, tmp_path: Path
):
    cli.target = tmp_path / "not-yet"
    summary = cli.json("list")
    assert summary["exit_code"] == 0
    assert {row["status"] for row in summary["models"]} == {"missing"}
    assert len(summary["models"]) == 3
    assert not cli.target.exists()


def test_a_refused_clear_changes_nothing_at_all(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    assert (target / LOCK_NAME).exists()
    before = snapshot(target)
    time.sleep(0.01)  # a rewrite would show in the lock's mtime
    result = cli("clear")
    assert result.returncode == 2
    assert "add --yes" in result.stderr
    assert snapshot(target) == before

    cli.target = target.parent / "never-made"
    result = cli("clear")
    assert result.returncode == 0, result.stderr
    assert not cli.target.exists()


# -- complete means present ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "path"),
    [("deleted", "speech_tokenizer/model.safetensors"), ("resized", "config.json")],
)
def test_a_file_gone_from_a_complete_model_is_noticed_and_fetched_alone(
    cli: Cli, repos: Repos, target: Path, damage: str, path: str
):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    file = model_dir(target, SMALL) / path
    if damage == "deleted":
        file.unlink()
    else:
        file.write_bytes(file.read_bytes() + b"\n")

    assert rows_by_repo(cli.json("list"))[SMALL]["status"] == "incomplete"

    cli.hub.reset_counts()
    result = cli("download", "--model-size", "0.6B", "--json")
    assert result.returncode == 0, result.stderr
    rows = rows_by_repo(json.loads(result.stdout))
    assert rows[SMALL]["status"] == "repaired"
    assert rows[TOKENIZER]["status"] == "up-to-date"
    gets = [r for r in cli.hub.requests if r.kind == "resolve" and r.method == "GET"]
    assert [(r.repo_id, r.path) for r in gets] == [(SMALL, path)]
    assert_complete(target, SMALL, repos.files[SMALL])
    # The repair says which file and how many bytes.
    size = len(repos.files[SMALL][path])
    plan_line = next(line for line in result.stderr.splitlines() if "repair" in line)
    assert path in plan_line and f"fetch 1 of 5 file(s) ({human_bytes(size)})" in plan_line, result.stderr
    assert " 0 B" not in result.stderr, result.stderr
    assert rows[SMALL]["fetch_bytes"] == size
    assert rows_by_repo(cli.json("list"))[SMALL]["status"] == "complete"


# -- every command stoppable -----------------------------------------------------------------------------


def catches_sigterm(pid: int) -> bool:
    """True once the process has installed its SIGTERM handler (the CLI's stop_on_signals is in place)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


def bytes_read(pid: int) -> int:
    io = Path(f"/proc/{pid}/io").read_text()
    return int(next(line for line in io.splitlines() if line.startswith("rchar:")).split()[1])


def start(cli: Cli, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli.argv(*argv),
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cli.model_list.parent,
    )


def wait_for(process: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None:
            stdout, stderr = process.communicate()
            raise AssertionError(f"{what}: the command ended first ({process.returncode}): {stdout}\n{stderr}")
        assert time.monotonic() < deadline, f"{what}: never happened"
        time.sleep(0.005)


def stop(process: subprocess.Popen[str], sig: int, within: float = 15) -> str:
    """Send `sig`; the command must end with 130 within `within` seconds, saying so once, without a traceback."""
    process.send_signal(sig)
    started = time.monotonic()
    try:
        stdout, stderr = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"did not stop within {within:.0f}s of {signal.Signals(sig).name}") from None
    seconds = time.monotonic() - started
    assert process.returncode == 130, (process.returncode, stderr)
    said = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(said) == 1, stderr
    assert_no_traceback(stdout, stderr)
    assert stdout == ""
    assert seconds < within
    return stderr


def said_at_the_stop(stderr: str) -> str:
    """The operation's own line at the stop: what it did, and what it left."""
    (line,) = [line for line in stderr.splitlines() if line.startswith("interrupted: ")]
    return line.removeprefix("interrupted: ")


def many_files(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        os.close(os.open(directory / f"{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644))


SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


@pytest.mark.parametrize("sig", SIGNALS)
def test_verify_stops_mid_hash(cli: Cli, target: Path, sig: int):
    """A model of a few sparse GiB (real files, read at hashing speed) keeps verify busy for seconds."""
    big = model_dir(target, BIG)
    big.mkdir(parents=True)
    records = []
    for i in range(4):
        path = f"model-{i}.safetensors"
        with (big / path).open("wb") as f:
            f.truncate(3 * GIB)
        records.append(FileRecord(path, 3 * GIB, "sha256:" + "0" * 64))
    write_manifest(big, new_manifest(BIG, "main", "a" * 40, records, None, None))

    process = start(cli, "verify", "--model", BIG)
    wait_for(process, lambda: catches_sigterm(process.pid) and bytes_read(process.pid) > 256 * MIB, "hashing")
    stderr = stop(process, sig)
    assert "received" in stderr
    assert said_at_the_stop(stderr) == (
        f"verify stopped before its verdict: checked none of the models it hashes; not {BIG}: "
        "run the same command again for the verdict"
    )
    # Stopped before it could judge: the manifest is neither vouched for nor removed.
    assert (big / MANIFEST_NAME).exists()


@pytest.mark.parametrize("sig", SIGNALS)
def test_clear_stops_between_models(cli: Cli, repos: Repos, target: Path, sig: int):
    assert cli("download").returncode == 0
    # Clear goes in name order (0.6B, 1.7B, Tokenizer) and unlinks a model's pointer before its files, so
    # 40,000 files behind the first pointer keep it busy on the first model when the signal arrives.
    many_files(model_dir(target, SMALL) / "junk", 40_000)
    pointer = target / SMALL.split("/")[1] / POINTER_NAME

    process = start(cli, "clear", "--yes")
    wait_for(process, lambda: not pointer.exists(), "the first removal")
    stderr = stop(process, sig)
    assert said_at_the_stop(stderr) == (
        f"clear stopped: removed Qwen3-TTS-12Hz-0.6B-Base/ from {target}; Qwen3-TTS-12Hz-1.7B-Base/, "
        "Qwen3-TTS-Tokenizer-12Hz/ remain: run the same command again to remove them"
    )
    assert_not_loadable(target, SMALL)
    for repo_id in (BIG, TOKENIZER):
        assert_complete(target, repo_id, repos.files[repo_id])


def test_list_stops_on_either_signal_and_changes_nothing(cli: Cli, repos: Repos, target: Path):
    """One target of 100,000 files (making them takes seconds) serves both signals: `list` only reads it."""
    assert cli("download", "--model-size", "0.6B").returncode == 0
    many_files(model_dir(target, SMALL) / "junk", 100_000)
    before = snapshot(target)

    for sig in (signal.SIGINT, signal.SIGTERM):
        process = start(cli, "list")
        wait_for(process, partial(catches_sigterm, process.pid), f"the signal handlers ({signal.Signals(sig).name})")
        stop(process, sig)
        assert snapshot(target) == before, signal.Signals(sig).name


def assert_only_the_stop_was_said(stderr: str, sig: int, *, before: str | None = None) -> None:
    """The acknowledgement of the signal, then the one line that says the read-only run stopped: nothing else.

    `before`: the start of the one line the run said before it was stopped.
    """
    lines = stderr.splitlines()
    if before is not None:
        assert lines[0].startswith(before), stderr
        lines = lines[1:]
    assert lines[0] == f"warning: received {signal.Signals(sig).name}; stopping and cleaning up", stderr
    assert len(lines) == 2 and lines[1].startswith("interrupted"), stderr
    assert lines[1].endswith("nothing was changed"), stderr


def held(cli: Cli) -> bool:
    return any(r.status == 0 for r in cli.hub.requests)


@pytest.mark.parametrize("sig", SIGNALS)
def test_list_stops_while_the_hub_holds_its_request(cli: Cli, repos: Repos, target: Path, sig: int):
    """`list` asks the Hub whether a complete model is current; a Hub slow to answer does not keep it from stopping."""
    assert cli("download", "--model-size", "0.6B").returncode == 0
    cli.model_list.with_suffix(".lock").unlink()  # with a lock, list asks the Hub nothing
    before = snapshot(target)
    cli.hub.hold(SMALL)

    process = start(cli, "list")
    wait_for(process, lambda: held(cli) and catches_sigterm(process.pid), "the held request")
    assert_only_the_stop_was_said(stop(process, sig, within=5), sig)
    assert snapshot(target) == before


@pytest.mark.parametrize(
    "waiting_on",
    [
        pytest.param("listed", id="a-listed-model"),
        pytest.param("changed", id="a-changed-model's-base-revision"),
        pytest.param("removed", id="a-model-the-list-removes"),
    ],
)
@pytest.mark.parametrize("sig", SIGNALS)
def test_plan_stops_while_the_hub_holds_its_request(cli: Cli, repos: Repos, tmp_path: Path, sig: int, waiting_on: str):
    """`plan --base-model-list` resolves the list, the base revisions of changed models and the models it removes."""
    v2 = {**repos.files[SMALL], "extra.json": b"{}"}
    cli.hub.commit(SMALL, v2, branch="v2")
    base = tmp_path / "base.toml"
    base.write_text(MODEL_LIST)
    changed = MODEL_LIST.replace(
        f'repo_id = "{SMALL}"\nsize = "0.6B"', f'repo_id = "{SMALL}"\nsize = "0.6B"\nrevision = "v2"'
    )
    cli.model_list.write_text(changed.replace(f'[[model]]\nrepo_id = "{BIG}"\nsize = "1.7B"\n', ""))
    if waiting_on == "listed":
        cli.hub.hold(TOKENIZER)
    elif waiting_on == "changed":
        cli.hub.hold(SMALL, revision="main")
    else:
        cli.hub.hold(BIG)

    process = start(cli, "plan", "--base-model-list", str(base))
    wait_for(process, lambda: held(cli) and catches_sigterm(process.pid), "the held request")
    # No models.lock yet: once the list is resolved, the plan says so, then waits on the Hub for the base.
    said_first = None if waiting_on == "listed" else "warning: models.lock is out of date"
    assert_only_the_stop_was_said(stop(process, sig, within=5), sig, before=said_first)


@pytest.mark.parametrize("path", ["http", "xet"])
@pytest.mark.parametrize("sig", SIGNALS)
def test_download_stops_mid_transfer(cli: Cli, repos: Repos, target: Path, sig: int, path: str):
    if path == "xet":
        cli.hub.enable_xet()
    cli.hub.throttle(300_000)
    process = start(cli, "download", "--model-size", "0.6B")
    wait_for(process, lambda: cli.hub.bytes_sent > 100_000 and bool(list(target.rglob("*.incomplete"))), "transfer")
    stderr = stop(process, sig)
    assert said_at_the_stop(stderr).startswith(
        f"download stopped while fetching {SMALL}, {TOKENIZER}: run the same command again to resume them"
    )
    assert not list(target.rglob(MANIFEST_NAME))
    assert not list(target.rglob("*.incomplete"))


@pytest.mark.parametrize("attempt", range(4))
def test_a_stop_during_an_xet_transfer_never_prints_a_traceback(cli: Cli, repos: Repos, target: Path, attempt: int):
    """hf_xet calls back into Python from its own threads; a stop must never raise there (it used to, 3 runs in 4)."""
    cli.hub.enable_xet()
    cli.hub.throttle(200_000 + 100_000 * attempt)  # a different moment of the transfer each time
    process = start(cli, "download")
    wait_for(process, lambda: cli.hub.bytes_sent > 50_000 * (attempt + 1), "transfer")
    stop(process, signal.SIGINT)
    assert not list(target.rglob(MANIFEST_NAME))


# -- manifests and logs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_the_manifest_is_as_readable_as_the_model_files(cli: Cli, repos: Repos, target: Path, umask: int, mode: int):
    previous = os.umask(umask)  # the CLI process inherits it
    try:
        assert cli("download", "--model-size", "0.6B").returncode == 0
    finally:
        os.umask(previous)
    for repo_id in (SMALL, TOKENIZER):
        manifest = model_dir(target, repo_id) / MANIFEST_NAME
        assert manifest.stat().st_mode & 0o777 == mode
        assert (model_dir(target, repo_id) / "config.json").stat().st_mode & 0o777 == mode


def finish_line(stderr: str, repo_id: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith(f"{repo_id}: finished"))


@pytest.mark.parametrize("fault", ["cut mid-body", "500 mid-file"])
def test_a_retried_transfer_is_counted_once(cli: Cli, repos: Repos, target: Path, fault: str):
    if fault == "cut mid-body":
        cli.hub.corrupt(SMALL, WEIGHTS, truncate=True)
    else:
        cli.hub.fail(SMALL, 500, kind="resolve", method="GET", path=WEIGHTS)
    result = cli("download", "--model-size", "0.6B")
    assert result.returncode == 0, result.stderr
    assert_complete(target, SMALL, repos.files[SMALL])
    assert cli.hub.count(kind="resolve", method="GET", repo_id=SMALL) == 6  # five files, one of them twice
    size = sum(len(b) for b in repos.files[SMALL].values())
    line = finish_line(result.stderr, SMALL)
    assert f"finished, {human_bytes(size)} transferred" in line, line


def test_a_repair_after_verify_names_the_file_it_fetches_and_its_bytes(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    weights = model_dir(target, SMALL) / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert cli("verify").returncode == 1

    cli.hub.reset_counts()
    result = cli("download", "--model-size", "0.6B", "--json")
    assert result.returncode == 0, result.stderr
    assert rows_by_repo(json.loads(result.stdout))[SMALL]["status"] == "repaired"
    assert cli.hub.transfers(SMALL, WEIGHTS) == 1
    size = len(repos.files[SMALL][WEIGHTS])
    # verify recorded which file is damaged: the plan names it, with its size, before anything moves.
    said = f"{SMALL}: repair at {repos.commits[SMALL][:7]}: fetch 1 of 5 file(s) ({human_bytes(size)}): {WEIGHTS}"
    assert any(line.startswith(said) for line in result.stderr.splitlines()), result.stderr
    assert "fetching 0 file(s)" not in result.stderr, result.stderr
    assert " 0 B" not in result.stderr, result.stderr
    assert f"finished, {human_bytes(size)} transferred" in finish_line(result.stderr, SMALL)
    assert_complete(target, SMALL, repos.files[SMALL])
