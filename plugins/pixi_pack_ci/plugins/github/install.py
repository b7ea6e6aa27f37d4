"""Install the action's own environment from its hash-pinned lock (standard library only).

The composite action runs this file with the Python that actions/setup-python returned, before
anything else is installed, from the action's checkout::

    python install.py locate     # step outputs: venv, python, cli, key (the environment's cache key)
    python install.py install    # build the environment, unless the one there was built for this key
    python install.py build OUT  # sdist and wheel of the checkout with the locked build backend (releases)

Nothing unpinned is ever downloaded. This file fetches one file itself, the uv wheel, and runs it
only if its sha256 is one of the lock's hashes for uv; uv then installs ``requirements/action.txt``
with ``--require-hashes --no-build`` (wheels only: building an sdist would fetch its build backend
unpinned), and builds the action's own wheel with hatchling and its dependencies from
``requirements/build.txt``, also hash-checked (``--build-constraints --require-hashes``). uv is not
bootstrapped with pip because pip took 3.6 s of a 10 s budget just to install uv (bench/action_install.py).

The package index is ``$UV_DEFAULT_INDEX``, ``$UV_INDEX_URL`` or ``$PIP_INDEX_URL`` (the first that
is set), else PyPI; proxies come from the usual ``*_proxy`` variables.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html.parser
import json
import os
import platform
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import venv
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[4]
LOCK = Path("requirements") / "action.txt"
BUILD_LOCK = Path("requirements") / "build.txt"
#: What the installed environment is made of, besides the locks: the wheel's contents and metadata.
SOURCES = ("pyproject.toml", "README.md", "core", "plugins", "hatch_plugin")
DEFAULT_INDEX = "https://pypi.org/simple"
#: Written into the environment last, so a half-built or foreign environment is never taken as done.
MARKER = "pixi-pack-ci-environment.json"
#: Bump to retire every cached environment (a change in how environments are laid out).
KEY_VERSION = "v1"
LEGACY_MANYLINUX = {"manylinux1": "manylinux_2_5", "manylinux2010": "manylinux_2_12", "manylinux2014": "manylinux_2_17"}


class InstallError(Exception):
    """The environment cannot be installed; the message says why in one line."""


# --- the lock ----------------------------------------------------------------------------------


def read_lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """``name -> (version, sha256 hashes)`` of a ``uv pip compile --generate-hashes`` file."""
    entries: dict[str, tuple[str, frozenset[str]]] = {}
    logical = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not match:
            raise InstallError(f"{path}: not a pinned requirement: {line[:80]}")
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        if not hashes:
            raise InstallError(f"{path}: {match.group(1)} has no --hash")
        entries[canonical(match.group(1))] = (match.group(2), hashes)
    return entries


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- where things are --------------------------------------------------------------------------


def default_venv() -> Path:
    return Path(os.environ.get("RUNNER_TEMP") or tempfile.gettempdir()) / "pixi-pack-ci-venv"


def venv_bin(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts" if sys.platform == "win32" else "bin")


def venv_python(venv_dir: Path) -> Path:
    return venv_bin(venv_dir) / ("python.exe" if sys.platform == "win32" else "python")


def venv_cli(venv_dir: Path) -> Path:
    return venv_bin(venv_dir) / ("pixi-pack-ci.exe" if sys.platform == "win32" else "pixi-pack-ci")


def source_digest(root: Path) -> str:
    """sha256 over the locks and every file that goes into the action's wheel, with their paths."""
    digest = hashlib.sha256()
    files: list[Path] = [root / LOCK, root / BUILD_LOCK]
    for name in SOURCES:
        path = root / name
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            )
        else:
            files.append(path)
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def environment_key(root: Path, venv_dir: Path) -> str:
    """The cache key of the environment: the lock and the action's code (one digest), the exact
    Python, the runner's OS and architecture; the interpreter's and the venv's paths go into the
    digest too, since a venv points at both."""
    digest = hashlib.sha256()
    for part in (source_digest(root), sys.version, os.path.realpath(sys.executable), str(venv_dir.absolute())):
        digest.update(part.encode() + b"\0")
    runner_os = os.environ.get("RUNNER_OS") or platform.system()
    arch = os.environ.get("RUNNER_ARCH") or platform.machine()
    return f"pixi-pack-ci-env-{KEY_VERSION}-{runner_os}-{arch}-py{platform.python_version()}-{digest.hexdigest()[:24]}"


def set_outputs(outputs: Mapping[str, str]) -> None:
    for name, value in outputs.items():
        print(f"{name}={value}")
    if target := os.environ.get("GITHUB_OUTPUT"):
        with open(target, "a", encoding="utf-8") as out:
            out.writelines(f"{name}={value}\n" for name, value in outputs.items())


# --- fetching uv -------------------------------------------------------------------------------


def index_url() -> str:
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if value := os.environ.get(name, "").strip():
            return value
    return DEFAULT_INDEX


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def _ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    # Interpreters built from source (as on macOS runners) may find no system CA store; pip's
    # bundled certifi is beside any interpreter that has pip.
    bundles = [os.environ.get(name, "") for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    try:
        from pip._vendor import certifi

        bundles.append(certifi.where())
    except ImportError:
        pass
    for bundle in bundles:
        if bundle and Path(bundle).is_file():
            context.load_verify_locations(cafile=bundle)
    return context


def _get(url: str, credentials: Mapping[str, str], context: ssl.SSLContext) -> bytes:
    parts = urllib.parse.urlsplit(url)
    headers = {"User-Agent": "pixi-pack-ci-action-installer", "Accept": "text/html"}
    if parts.hostname and parts.hostname in credentials:  # only to the host the index URL named them for
        headers["Authorization"] = credentials[parts.hostname]
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            data: bytes = response.read()
            return data
    except OSError as exc:
        raise InstallError(f"cannot fetch {urllib.parse.urlunsplit(parts._replace(query=''))}: {exc}") from exc


def _strip_credentials(url: str) -> tuple[str, dict[str, str]]:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None or parts.hostname is None:
        return url, {}
    token = base64.b64encode(
        f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}".encode()
    ).decode()
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {parts.hostname: f"Basic {token}"}


def platform_fits(tag: str) -> bool:
    """Whether a wheel's platform tag (``manylinux_2_17_x86_64.manylinux2014_x86_64``, ...) runs here.
    Only what uv's wheels are tagged with is known: manylinux, musllinux, macosx, win."""
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686", "x86": "i686"}.get(machine, machine)
    for one in tag.split("."):
        if sys.platform == "win32":
            if one == {"x86_64": "win_amd64", "aarch64": "win_arm64", "i686": "win32"}.get(arch):
                return True
        elif sys.platform == "darwin":
            match = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", one)
            release = tuple(int(x) for x in (platform.mac_ver()[0] or "0.0").split(".")[:2])
            wanted = {"arm64" if arch == "aarch64" else arch, "universal2"}
            if match and match.group(3) in wanted and (int(match.group(1)), int(match.group(2))) <= release:
                return True
        else:
            legacy = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_(\w+)", one)
            if legacy:  # PEP 600's names for the older tags
                one = f"{LEGACY_MANYLINUX[legacy.group(1)]}_{legacy.group(2)}"
            libc, libc_version = platform.libc_ver()
            match = re.fullmatch(r"(manylinux|musllinux)_(\d+)_(\d+)_(\w+)", one)
            if not match or match.group(4) != arch:
                continue
            wanted_version = (int(match.group(2)), int(match.group(3)))
            if match.group(1) == "manylinux" and libc == "glibc":
                if wanted_version <= tuple(int(x) for x in libc_version.split(".")[:2]):
                    return True
            elif match.group(1) == "musllinux" and libc != "glibc":
                return True
    return False


def fetch_uv(lock: Mapping[str, tuple[str, frozenset[str]]], index: str, into: Path) -> Path:
    """The ``uv`` binary of the locked uv wheel for this machine, checked against the lock's hashes."""
    if "uv" not in lock:
        raise InstallError("the lock has no uv")
    version, hashes = lock["uv"]
    index, credentials = _strip_credentials(index)
    context = _ssl_context()
    page_url = index.rstrip("/") + "/uv/"
    anchors = _Anchors()
    anchors.feed(_get(page_url, credentials, context).decode("utf-8", "replace"))
    candidates: list[tuple[str, str]] = []
    for href in anchors.hrefs:
        url = urllib.parse.urljoin(page_url, href)
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        if not (filename.startswith(f"uv-{version}-") and filename.endswith(".whl")):
            continue
        fragment = urllib.parse.urlsplit(url).fragment
        # The index's own hash, when it gives one, saves downloading a file the lock would refuse.
        if fragment.startswith("sha256=") and fragment[7:] not in hashes:
            continue
        if platform_fits(filename[: -len(".whl")].split("-")[-1]):
            candidates.append((filename, url.split("#", 1)[0]))
    if not candidates:
        raise InstallError(
            f"no uv {version} wheel with a locked hash for {sys.platform} {platform.machine()} at {index}"
        )
    filename, url = candidates[0]
    data = _get(url, credentials, context)
    digest = hashlib.sha256(data).hexdigest()
    if digest not in hashes:
        raise InstallError(f"{filename}: sha256 {digest} is not one of the lock's hashes for uv {version}")
    wheel = into / filename
    wheel.write_bytes(data)
    binary = "uv.exe" if sys.platform == "win32" else "uv"
    with zipfile.ZipFile(wheel) as archive:
        target = into / binary
        target.write_bytes(archive.read(f"uv-{version}.data/scripts/{binary}"))
    target.chmod(0o755)
    return target


# --- installing --------------------------------------------------------------------------------


def _uv_env() -> dict[str, str]:
    # uv must never fetch an interpreter: that would be a download outside the lock.
    return {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}


def _group(title: str) -> None:
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print(f"::group::{title}", flush=True)
    else:
        print(f"== {title}", flush=True)


def _end_group() -> None:
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print("::endgroup::", flush=True)


def _run_together(commands: Mapping[str, Sequence[str]]) -> None:
    """Run the commands side by side (they share nothing but uv's cache, which uv locks), then show
    each one's output in its own group; raise if any failed."""
    with tempfile.TemporaryDirectory() as logs:
        running: dict[str, tuple[subprocess.Popen[bytes], IO[str]]] = {}
        for title, argv in commands.items():
            out = open(Path(logs) / f"{len(running)}.log", "w+", encoding="utf-8")  # noqa: SIM115
            running[title] = (subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=_uv_env()), out)
        failed = []
        for title, (process, log) in running.items():
            code = process.wait()
            log.seek(0)
            _group(title)
            print(log.read(), end="", flush=True)
            _end_group()
            log.close()
            if code != 0:
                failed.append(f"{title} failed (exit {code})")
        if failed:
            raise InstallError("; ".join(failed))


def installed_key(venv_dir: Path) -> str | None:
    try:
        data = json.loads((venv_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = data.get("key") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None


def cli_version(venv_dir: Path) -> str | None:
    try:
        proc = subprocess.run([str(venv_cli(venv_dir)), "--version"], capture_output=True, text=True, timeout=120)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def install(root: Path, venv_dir: Path, key: str) -> bool:
    """Make the environment at ``venv_dir`` for ``key``; False if the one there already was."""
    if installed_key(venv_dir) == key and (version := cli_version(venv_dir)):
        print(f"{version}: environment {key} restored, nothing to install")
        return False
    started = time.monotonic()
    if venv_dir.exists():
        shutil.rmtree(venv_dir)
    venv.EnvBuilder(with_pip=False, symlinks=sys.platform != "win32").create(venv_dir)
    python = str(venv_python(venv_dir))
    index = index_url()
    with tempfile.TemporaryDirectory(prefix="pixi-pack-ci-install-") as temp:
        scratch = Path(temp)
        uv = str(fetch_uv(read_lock(root / LOCK), index, scratch))
        common = ["--no-config", "--default-index", index]
        _run_together(
            {
                f"install {LOCK.as_posix()}": [
                    uv, "pip", "sync", "--python", python, "--require-hashes", "--no-build", *common, str(root / LOCK),
                ],
                "build pixi-pack-ci": [
                    uv, "build", "--wheel", "--out-dir", str(scratch / "dist"), "--python", python,
                    "--build-constraints", str(root / BUILD_LOCK), "--require-hashes", *common, str(root),
                ],
            }
        )  # fmt: skip
        (wheel,) = (scratch / "dist").glob("*.whl")
        # The wheel was just built here from the action's own files: no index is involved.
        _run_together({"install pixi-pack-ci": [uv, "pip", "install", "--python", python, "--no-deps", "--no-index",
                                                "--no-config", str(wheel)]})  # fmt: skip
    version = cli_version(venv_dir)
    if version is None:
        raise InstallError(f"{venv_cli(venv_dir)} --version failed after the install")
    (venv_dir / MARKER).write_text(json.dumps({"key": key, "version": version}) + "\n", encoding="utf-8")
    print(f"{version}: installed from {LOCK.as_posix()} in {time.monotonic() - started:.1f} s")
    return True


def build(root: Path, source: Path, out: Path) -> list[Path]:
    """sdist and wheel (built from the sdist) of ``source`` with the locked build backend."""
    index = index_url()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pixi-pack-ci-build-") as temp:
        uv = str(fetch_uv(read_lock(root / LOCK), index, Path(temp)))
        _run_together(
            {
                f"build {source}": [
                    uv, "build", "--sdist", "--wheel", "--out-dir", str(out), "--python", sys.executable,
                    "--build-constraints", str(root / BUILD_LOCK), "--require-hashes", "--no-config",
                    "--default-index", index, str(source),
                ]
            }
        )  # fmt: skip
    return sorted(p for p in out.iterdir() if p.suffix == ".whl" or p.name.endswith(".tar.gz"))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install.py", description=__doc__.split("\n\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("locate", "install"):
        command = commands.add_parser(name)
        command.add_argument("--venv", type=Path, default=None, help="default $RUNNER_TEMP/pixi-pack-ci-venv")
    build_parser = commands.add_parser("build")
    build_parser.add_argument("out", type=Path)
    build_parser.add_argument("--source", type=Path, default=ROOT, help="the tree to build (default: this checkout)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "build":
            for path in build(ROOT, args.source, args.out):
                print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
            return 0
        venv_dir = (args.venv or default_venv()).absolute()
        key = environment_key(ROOT, venv_dir)
        if args.command == "locate":
            set_outputs(
                {
                    "venv": str(venv_dir),
                    "python": str(venv_python(venv_dir)),
                    "cli": str(venv_cli(venv_dir)),
                    "key": key,
                }
            )
        else:
            set_outputs({"installed": "true" if install(ROOT, venv_dir, key) else "false"})
        return 0
    except InstallError as exc:
        if os.environ.get("GITHUB_ACTIONS") == "true":
            print(f"::error title=pixi-pack-ci install::{exc}", flush=True)
        print(f"install.py: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
