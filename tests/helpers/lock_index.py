"""A package index on 127.0.0.1 serving the action's locks (this machine's wheels of
requirements/action.txt and requirements/build.txt), a few decoys, and a log of every request.

The act run of test-action.yml, the installer tests, the GitLab template test and
bench/action_install.py install from it with no other network. ``outside_the_lock()`` names
every request that was not for a locked project's page or a locked file: an install that
resolved anything itself would ask for a decoy (a newer version of a locked project).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pixi_pack_ci.plugins.github.install import BUILD_LOCK, LOCK, canonical, read_lock
from support import write_simple_index

REPO = Path(__file__).resolve().parents[2]  # the repository (this is tests/helpers/)
WHEELHOUSE = REPO / ".cache" / "action-wheelhouse"


def locked(root: Path = REPO) -> dict[str, tuple[str, frozenset[str]]]:
    """Both locks: name -> (version, sha256 hashes)."""
    entries = dict(read_lock(root / BUILD_LOCK))
    for name, (version, hashes) in read_lock(root / LOCK).items():
        if name in entries and entries[name][0] == version:
            hashes = hashes | entries[name][1]
        entries[name] = (version, hashes)
    return entries


def wheelhouse(root: Path = REPO) -> Path:
    """This machine's wheels of both locks, downloaded from PyPI once per lock content with
    ``pip download --require-hashes`` (so the files are the locked ones)."""
    digest = hashlib.sha256((root / LOCK).read_bytes() + (root / BUILD_LOCK).read_bytes()).hexdigest()[:16]
    folder = WHEELHOUSE / f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"
    if (folder / ".complete").is_file():
        return folder
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_FIND_LINKS")}
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--require-hashes", "--only-binary", ":all:", "--dest", str(folder),
         "-r", str(root / LOCK), "-r", str(root / BUILD_LOCK)],
        check=True, env=env,
    )  # fmt: skip
    (folder / ".complete").touch()
    return folder


def project_of(filename: str) -> str:
    if filename.endswith(".whl"):
        return canonical(filename.split("-")[0])
    return canonical(re.sub(r"-[0-9][^-]*\.(tar\.gz|zip)$", "", filename))


@dataclass
class LockIndex:
    root: Path
    allowed: dict[str, frozenset[str]]  # project -> hashes a request may fetch
    decoys: list[str]
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/simple/"

    def outside_the_lock(self) -> list[str]:
        """Requests for anything but a locked project's page or a locked file."""
        outside = []
        for method, path in self.requests:
            page = re.fullmatch(r"/simple/([^/]+)/?", path)
            file = re.fullmatch(r"/files/([^/]+)", path)
            if page and canonical(page.group(1)) in self.allowed:
                continue
            if file and (self.root / "files" / file.group(1)).is_file():
                data = (self.root / "files" / file.group(1)).read_bytes()
                if hashlib.sha256(data).hexdigest() in self.allowed.get(project_of(file.group(1)), frozenset()):
                    continue
            outside.append(f"{method} {path}")
        return outside

    def files_served(self) -> list[str]:
        return sorted({path.rsplit("/", 1)[1] for method, path in self.requests if path.startswith("/files/")})

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


def decoy_wheels(folder: Path) -> list[Path]:
    """Newer versions of a runtime and a build dependency: a resolver that is not held to the
    lock takes them."""
    from support import build_wheel

    return [
        build_wheel(folder, "pluggy", "99.0", {"pluggy": "raise ImportError('decoy')\n"}),
        build_wheel(folder, "hatchling", "99.0", {"hatchling": "raise ImportError('decoy')\n"}),
    ]


def serve_lock_index(base: Path, *, extra: Iterable[Path] = (), decoys: bool = True) -> LockIndex:
    """Start an index on 127.0.0.1 of the locks' wheels, ``extra`` files (allowed too: e.g. a
    wheel the test built and pinned itself) and, unless told not to, decoys."""
    files = base / "files"
    files.mkdir(parents=True)
    sources = sorted(p for p in wheelhouse().iterdir() if p.suffix == ".whl")
    extra = list(extra)
    decoy_files = decoy_wheels(base / "decoys") if decoys else []
    for path in [*sources, *extra, *decoy_files]:
        (files / path.name).write_bytes(path.read_bytes())
    allowed = {name: hashes for name, (_, hashes) in locked().items()}
    for path in extra:
        name = project_of(path.name)
        allowed[name] = allowed.get(name, frozenset()) | {hashlib.sha256(path.read_bytes()).hexdigest()}
    write_simple_index(base, files)
    index = LockIndex(base, allowed, [p.name for p in decoy_files])
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            with lock:
                index.requests.append((self.command, path))
            file = base / path.lstrip("/")
            if file.is_dir():
                file = file / "index.html"
            if ".." in path or not file.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if file.suffix == ".html" else "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

    index.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    index.httpd.daemon_threads = True
    threading.Thread(target=index.httpd.serve_forever, daemon=True).start()
    return index


def offline_env(index: LockIndex, scratch: Path) -> dict[str, str]:
    """Environment for an install that may reach only ``index``: every proxy variable points at a
    closed port (so anything else fails), uv and pip caches start empty, and no find-links."""
    dead = "http://127.0.0.1:9"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_")) and "proxy" not in k.lower()}
    return {
        **env,
        "PIP_INDEX_URL": index.url,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "UV_CACHE_DIR": str(scratch / "uv-cache"),
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "ALL_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def action_lock() -> Any:
    """scripts/action_lock.py as a module (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("action_lock", REPO / "scripts" / "action_lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("action_lock", module)
    spec.loader.exec_module(module)
    return module


def locked_here(root: Path = REPO) -> set[str]:
    """The locked projects this machine installs: those whose environment marker holds here."""
    from packaging.markers import Marker

    pins = action_lock().read_pins
    names = set()
    for lock in (LOCK, BUILD_LOCK):
        for name, pin in pins((root / lock).read_text()).items():
            if not pin.marker or Marker(pin.marker).evaluate():
                names.add(name)
    return names
