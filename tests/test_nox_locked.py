"""tools/nox_locked.py: the uv it runs is the one uv.lock pins, checked by hash, or nothing runs."""

from __future__ import annotations

import hashlib
import http.server
import importlib.metadata
import io
import platform
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools import nox_locked
from tools.nox_locked import BootstrapError, Wheel, locked_uv, wheel_for

VERSION = "9.9.9"


@pytest.fixture
def pypi() -> Iterator[str]:
    """A stand-in for PyPI's file host on 127.0.0.1, serving one uv wheel tagged for this machine."""
    tag = {"Darwin": f"macosx_11_0_{platform.machine()}"}.get(platform.system(), f"manylinux_2_17_{platform.machine()}")
    name = f"/uv-{VERSION}-py3-none-{tag}.whl"
    body = uv_wheel()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == name else 404)
            self.send_header("Content-Length", str(len(body) if self.path == name else 0))
            self.end_headers()
            if self.path == name:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()  # a prompt shutdown()
    yield f"http://127.0.0.1:{server.server_address[1]}{name}"
    server.shutdown()
    server.server_close()


def uv_wheel() -> bytes:
    """A wheel laid out as uv's: the binary under `uv-<version>.data/scripts/` (here a script).

    Byte for byte the same on every call (a fixed timestamp): the tests hash one copy and serve another.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as wheel:
        entry = zipfile.ZipInfo(f"uv-{VERSION}.data/scripts/uv", date_time=(2026, 1, 1, 0, 0, 0))
        entry.external_attr = 0o600 << 16  # as writestr gives a name alone
        wheel.writestr(entry, f"#!/bin/sh\necho uv {VERSION}\n")
    return out.getvalue()


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No uv on PATH, and the bootstrap's directory in tmp_path."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    monkeypatch.setattr(nox_locked, "BOOTSTRAP", tmp_path / "bootstrap")
    return tmp_path / "bootstrap"


def test_the_lock_pins_uv_with_a_wheel_for_each_platform_the_quick_start_names():
    version, wheels = locked_uv((ROOT / "uv.lock").read_text(encoding="utf-8"))
    assert version == importlib.metadata.version("uv")  # this environment comes from the same lock
    for system, machine, libc in [
        ("Linux", "x86_64", ("glibc", "2.36")),  # Debian 12
        ("Linux", "x86_64", ("glibc", "2.39")),  # Ubuntu 24.04, GitHub's ubuntu-latest
        ("Linux", "aarch64", ("glibc", "2.39")),
        ("Darwin", "arm64", ("", "")),
        ("Darwin", "x86_64", ("", "")),
    ]:
        wheel = wheel_for(wheels, system, machine, libc)
        assert wheel.url.startswith("https://files.pythonhosted.org/")
        assert len(wheel.sha256) == 64


def test_a_wheel_for_a_newer_glibc_is_not_chosen():
    wheels = [Wheel("https://x/uv-1-py3-none-manylinux_2_28_x86_64.whl", "0" * 64)]
    with pytest.raises(BootstrapError, match="no uv wheel for Linux x86_64"):
        wheel_for(wheels, "Linux", "x86_64", ("glibc", "2.17"))


def test_the_locked_wheel_is_unpacked_once_its_hash_matches(pypi: str, isolated: Path):
    wheel = Wheel(pypi, hashlib.sha256(uv_wheel()).hexdigest())

    binary = nox_locked.installed_uv(VERSION, [wheel])

    assert binary == isolated / f"uv-{VERSION}" / "uv"
    assert subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout == f"uv {VERSION}\n"
    assert sorted(p.name for p in binary.parent.iterdir()) == ["uv", "uv.whl"]  # the wheel it came from, no scratch


def test_a_wheel_whose_hash_differs_from_the_lock_is_refused_and_not_kept(pypi: str, isolated: Path):
    wheel = Wheel(pypi, hashlib.sha256(b"what the lock says").hexdigest())

    with pytest.raises(BootstrapError, match=r"uv\.lock says"):
        nox_locked.installed_uv(VERSION, [wheel])

    assert list((isolated / f"uv-{VERSION}").iterdir()) == []


def test_a_kept_binary_that_is_not_the_locked_wheels_is_fetched_again_not_run(pypi: str, isolated: Path):
    """An earlier step (or a restored cache) swaps the unpacked uv: checked against its wheel and the lock, not run."""
    wheel = Wheel(pypi, hashlib.sha256(uv_wheel()).hexdigest())
    binary = nox_locked.installed_uv(VERSION, [wheel])
    binary.write_text("#!/bin/sh\necho uv 9.9.9 but not really\n")

    assert nox_locked.installed_uv(VERSION, [wheel]) == binary
    assert subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout == f"uv {VERSION}\n"

    # A wheel swapped with its binary is no better: the wheel must still have the lock's hash.
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w") as archive:
        archive.writestr(f"uv-{VERSION}.data/scripts/uv", "#!/bin/sh\necho forged\n")
    binary.with_name("uv.whl").write_bytes(forged.getvalue())
    binary.write_text("#!/bin/sh\necho forged\n")

    assert nox_locked.installed_uv(VERSION, [wheel]) == binary
    assert subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout == f"uv {VERSION}\n"


def test_dash_r_installs_nothing_once_noxs_environment_exists(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """The workflows' secret-holding steps run `-R`: no uv fetched, no `uv sync`, nox started as it is."""
    python = isolated / "nox" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    started: list[list[str]] = []
    monkeypatch.setattr("tools.nox_locked.os.execve", lambda path, args, env: started.append([str(path), *args]))
    empty_lock = tmp_path / "uv.lock"
    empty_lock.write_text("version = 1\n")  # pins no uv: anything that installs would stop on it
    monkeypatch.setattr(nox_locked, "LOCK", empty_lock)
    monkeypatch.chdir(tmp_path)  # main() moves to the repository's root; put the test's directory back after

    nox_locked.main(["-R", "-s", "verify"])

    assert started == [[str(python), str(python), "-m", "nox", "-R", "-s", "verify"]]

    # Without -R the bootstrap syncs, and so needs uv from the lock.
    started.clear()
    assert nox_locked.main(["-s", "verify"]) == 2
    assert started == []


def test_sessions_run_the_checkout_without_building_it():
    """The sessions install uv.lock's packages and not the project: hatchling, which the lock does not pin, never runs.

    This test runs inside such a session (`nox -s tests`).
    """
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("qwen3-tts-model-cache")
