"""Test helpers: real conda packages, a real channel index, a real HTTP server on 127.0.0.1, real lockfiles.

Packages are built with ``rattler_build.assemble_package`` and indexed with ``rattler.index``.
"""

from __future__ import annotations

import asyncio
import base64
import bz2
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import rattler
from rattler_build import ArchiveType, assemble_package

#: A long prefix placeholder, so binary replacement has room for any test prefix.
PLACEHOLDER = "/opt/pixi-pack-ci-build-prefix_" + "placehold_" * 20


@dataclass
class PackageSpec:
    name: str
    version: str = "1.0"
    build: str = "0"
    subdir: str = "linux-64"
    depends: list[str] = field(default_factory=list)
    archive: str = "conda"  # or "tar.bz2"
    #: relative path → content; a str is text, bytes is binary
    files: dict[str, str | bytes] = field(default_factory=dict)
    #: relative path → symlink target
    symlinks: dict[str, str] = field(default_factory=dict)
    #: files whose content embeds PLACEHOLDER: relative path → "text" | "binary" (tar.bz2 only)
    placeholders: dict[str, str] = field(default_factory=dict)
    executable: tuple[str, ...] = ()
    payload_size: int = 0  # extra incompressible bytes, for big packages

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.{self.archive}"


def _add_placeholders(package: Path, placeholders: dict[str, str]) -> None:
    """Record prefix placeholders in ``info/paths.json`` of a ``.tar.bz2`` package.

    assemble_package detects prefixes only against its own random staging folder, which a test
    cannot embed in a file beforehand; so the test writes a known placeholder and records it
    here, exactly as conda-build/rattler-build would have.
    """
    with tarfile.open(package, "r:bz2") as src:
        members = [(m, src.extractfile(m).read() if m.isreg() else None) for m in src.getmembers()]  # type: ignore[union-attr]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for member, data in members:
            if member.name == "info/paths.json":
                assert data is not None
                paths = json.loads(data)
                for entry in paths["paths"]:
                    mode = placeholders.get(entry["_path"])
                    if mode:
                        entry["prefix_placeholder"] = PLACEHOLDER
                        entry["file_mode"] = mode
                data = json.dumps(paths, indent=2).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    package.write_bytes(bz2.compress(out.getvalue()))


def build_package(spec: PackageSpec, channel: Path, work: Path) -> Path:
    files = work / f"files-{spec.name}-{spec.subdir}"
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir(parents=True)
    contents = dict(spec.files) or {f"share/{spec.name}/{spec.name}.txt": f"{spec.name} {spec.version}\n"}
    if spec.payload_size:
        contents[f"share/{spec.name}/payload.bin"] = os.urandom(spec.payload_size)
    for rel, content in contents.items():
        path = files / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        if rel in spec.executable:
            path.chmod(0o755)
    for rel, target in spec.symlinks.items():
        link = files / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    out_dir = channel / spec.subdir
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec.placeholders and spec.archive != "tar.bz2":
        raise ValueError("placeholders are only supported for tar.bz2 test packages")
    result = assemble_package(
        name=spec.name,
        version=spec.version,
        target_platform=spec.subdir,
        build_string=spec.build,
        output_dir=out_dir,
        files_dir=files,
        depends=spec.depends,
        noarch="generic" if spec.subdir == "noarch" else None,
        archive_type=ArchiveType.TarBz2 if spec.archive == "tar.bz2" else ArchiveType.Conda,
        compression_level=1,
        detect_prefix=False,
    )
    if spec.placeholders:
        _add_placeholders(result.path, spec.placeholders)
    return result.path


def build_channel(channel: Path, specs: list[PackageSpec], work: Path) -> None:
    for spec in specs:
        build_package(spec, channel, work)
    (channel / "noarch").mkdir(parents=True, exist_ok=True)
    asyncio.run(rattler.index.index_fs(channel, write_zst=False, write_shards=False, force=True))


def channel_records(channel: Path, url: str) -> dict[str, list[rattler.RepoDataRecord]]:
    """subdir → records, with URLs pointing at ``url`` (the channel's base URL)."""
    out: dict[str, list[rattler.RepoDataRecord]] = {}
    for repodata in sorted(channel.glob("*/repodata.json")):
        records = rattler.RepoData.from_path(repodata).into_repo_data(rattler.Channel(url))
        out[repodata.parent.name] = sorted(records, key=lambda r: r.file_name)
    return out


def write_lockfile(
    path: Path,
    environments: dict[str, dict[str, list[rattler.RepoDataRecord]]],
    channel_url: str,
) -> Path:
    """A lockfile (current version) with ``environments``: env → platform → records."""
    platforms = sorted({p for env in environments.values() for p in env})
    lock = rattler.LockFile([rattler.LockPlatform(p) for p in platforms])
    for env_name, by_platform in environments.items():
        lock.set_channels(env_name, [rattler.LockChannel(channel_url)])
        for platform, records in by_platform.items():
            for record in records:
                lock.add_conda_package(env_name, rattler.LockPlatform(platform), record)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock.to_path(path)
    return path


class ChannelServer:
    """A real HTTP server on 127.0.0.1 serving a folder, with a request log and scripted faults.

    ``faults[path]`` is a list of actions consumed one per request: ``"500"``, ``"503"``,
    ``"404"``, ``"reset"`` (close without answering), ``"truncate"`` (half the body, then close),
    ``"corrupt"`` (right length, wrong bytes). ``always_fail`` paths answer 500 forever.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        self.faults: dict[str, list[str]] = {}
        self.always_fail: set[str] = set()
        self.required_auth: dict[str, str] = {}  # path prefix → expected Authorization header
        self.headers_seen: list[dict[str, str]] = []
        self.required_conda_token: str | None = None  # when set, every path must start with /t/<token>/
        # Random faults: this share of requests fails, decided by hash(seed, path, n-th request of
        # that path), so the same requests fail in every run whatever the client's order.
        self.fault_rate = 0.0
        self.fault_seed = 0
        self.random_faults = ("500", "503", "reset", "truncate", "corrupt", "slow")
        self.faults_served: Counter[str] = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(server.root), **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                token = server.required_conda_token
                if token is not None:
                    if not path.startswith(f"/t/{token}/"):
                        self._status(403)
                        return
                    path = path[len(f"/t/{token}") :]
                with server._lock:
                    server.requests[path] += 1
                    server.headers_seen.append(dict(self.headers))
                    queue = server.faults.get(path)
                    action = queue.pop(0) if queue else None
                    if action is None and server.fault_rate:
                        key = f"{server.fault_seed}:{path}:{server.requests[path]}".encode()
                        roll = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
                        if (roll % 10_000) < server.fault_rate * 10_000:
                            action = server.random_faults[(roll >> 32) % len(server.random_faults)]
                    if action:
                        server.faults_served[action] += 1
                for prefix, expected in server.required_auth.items():
                    if path.startswith(prefix) and self.headers.get("Authorization") != expected:
                        self._status(401)
                        return
                if path in server.always_fail or action in ("500", "503", "404"):
                    self._status(int(action or 500))
                    return
                if action == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                file = server.root / path.lstrip("/")
                if file.is_dir() and (file / "index.html").is_file():  # a PEP 503 index page
                    file = file / "index.html"
                if not file.is_file():
                    self._status(404)
                    return
                data = file.read_bytes()
                if action == "corrupt":
                    data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
                self.send_response(200)
                html_page = file.suffix == ".html"
                self.send_header("Content-Type", "text/html" if html_page else "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if action == "slow":  # the right bytes, trickled
                    step = max(1, len(data) // 8)
                    for i in range(0, len(data), step):
                        self.wfile.write(data[i : i + step])
                        self.wfile.flush()
                        time.sleep(0.02)
                    return
                if action == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)

            def _status(self, code: int) -> None:
                body = f"status {code}\n".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def start(self) -> ChannelServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self.always_fail.clear()
            self.fault_rate = 0.0
            self.faults_served.clear()
            self.required_auth.clear()
            self.headers_seen.clear()
            self.required_conda_token = None


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def build_wheel(
    directory: Path,
    name: str,
    version: str,
    modules: dict[str, str],
    console_scripts: dict[str, str] | None = None,
    tag: str = "py3-none-any",
) -> Path:
    """A minimal, valid wheel (PEP 427): modules, dist-info METADATA/WHEEL/RECORD, entry points."""
    import hashlib
    import zipfile

    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files: dict[str, bytes] = {f"{mod}.py": src.encode() for mod, src in modules.items()}
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: pixi-pack-ci-tests\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    )
    if console_scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in console_scripts.items())
        files[f"{info}/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()

    def digest(data: bytes) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},{digest(data)},{len(data)}\n" for path, data in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files.items():
            zf.writestr(zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return path


def add_pypi_hashes(lock_path: Path, hashes: dict[str, str]) -> None:
    """py-rattler's add_pypi_package takes no hash; add ``sha256:`` to the given pypi entries, as pixi writes them."""
    out: list[str] = []
    lines = lock_path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if line.startswith("- pypi: ") and line[len("- pypi: ") :] in hashes:
            while i < len(lines) and lines[i].startswith("  "):
                out.append(lines[i])
                i += 1
            out.append(f"  sha256: {hashes[line[len('- pypi: ') :]]}")
    lock_path.write_text("\n".join(out) + "\n")


@dataclass
class LockedPypi:
    """A PyPI entry of a pixi lockfile: a wheel or sdist URL, or a folder such as ``.``."""

    location: str
    name: str
    version: str | None = None
    sha256: str | None = None
    requires_python: str | None = ">=3.8"
    editable: bool = False


def write_pixi_lock(
    path: Path,
    version: int,
    channel_url: str,
    conda: dict[str, list[rattler.RepoDataRecord]],
    pypi: dict[str, list[LockedPypi]] | None = None,
    platform_subdirs: dict[str, str] | None = None,
    indexes: list[str] | None = None,
) -> Path:
    """A lockfile laid out as pixi writes it (v6 or v7, one ``default`` environment):
    ``conda`` and ``pypi`` map lockfile platform names to entries; ``platform_subdirs`` gives
    v7 platform names that are not subdirs (``{"linux-64-cuda": "linux-64"}``).

    py-rattler writes the conda records (the same fields pixi writes); the PyPI entries are
    written here because py-rattler can neither give them hashes nor write folder entries, which
    pixi writes as ``- pypi: .`` with no version in v7, and with ``version``, ``sha256`` and
    ``editable: true`` in v6. Entries are sorted by name, as pixi sorts them.
    """
    pypi = pypi or {}
    subdirs = platform_subdirs or {}
    records = {r.url: r for rs in conda.values() for r in rs}
    scratch = write_lockfile(path.with_suffix(".conda-only"), {"default": {"linux-64": list(records.values())}}, "x")
    conda_text = scratch.read_text().split("\npackages:\n", 1)[1]
    scratch.unlink()
    by_url = {r.url: r.name.normalized for r in records.values()}
    blocks: list[tuple[str, str]] = []
    for block in ("\n" + conda_text).split("\n- conda: ")[1:]:
        blocks.append((by_url[block.split("\n", 1)[0]], "- conda: " + block.rstrip("\n") + "\n"))
    for entry in {e.location: e for es in pypi.values() for e in es}.values():
        lines = [f"- pypi: {entry.location}", f"  name: {entry.name}"]
        if entry.version and (version < 7 or not entry.location.startswith(".")):
            # YAML would read 1.1 as a number; pixi quotes such versions.
            quoted = re.fullmatch(r"[0-9.]+", entry.version) and entry.version.count(".") <= 1
            lines.append(f"  version: '{entry.version}'" if quoted else f"  version: {entry.version}")
        if entry.sha256 and (version < 7 or not entry.location.startswith(".")):
            lines.append(f"  sha256: {entry.sha256}")
        if entry.requires_python:
            lines.append(f"  requires_python: '{entry.requires_python}'")
        if entry.editable and version < 7:
            lines.append("  editable: true")
        blocks.append((entry.name, "\n".join(lines) + "\n"))
    blocks.sort()
    out = [f"version: {version}"]
    names = sorted({*conda, *pypi})
    if version >= 7:
        out.append("platforms:")
        for name in names:
            out.append(f"- name: {name}")
            if name in subdirs:
                out.append(f"  subdir: {subdirs[name]}")
    out += ["environments:", "  default:", "    channels:", f"    - url: {channel_url}"]
    if pypi:
        out += ["    indexes:", *(f"    - {url}" for url in indexes or ["https://pypi.org/simple"])]
    out.append("    packages:")
    for name in names:
        out.append(f"      {name}:")
        out += [f"      - conda: {r.url}" for r in conda.get(name, [])]
        out += [f"      - pypi: {e.location}" for e in pypi.get(name, [])]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\npackages:\n" + "".join(b for _, b in blocks))
    return path


def write_simple_index(root: Path, files: Path) -> None:
    """A PEP 503 "simple" index under ``root/simple/`` of every wheel and sdist in ``files`` (which
    must be ``root/files``): one page per normalized project name, links with their sha256."""
    import html
    import re

    def project_of(filename: str) -> str:
        if filename.endswith(".whl"):
            stem = filename.split("-")[0]
        else:  # an sdist: the name is what comes before -<version>
            stem = re.sub(r"-[0-9][^-]*\.(tar\.gz|zip)$", "", filename)
        return re.sub(r"[-_.]+", "-", stem).lower()

    by_project: dict[str, list[Path]] = {}
    for path in files.iterdir():
        by_project.setdefault(project_of(path.name), []).append(path)
    for project, paths in by_project.items():
        links = "".join(
            f'<a href="../../files/{html.escape(p.name)}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}">'
            f"{html.escape(p.name)}</a>\n"
            for p in sorted(paths)
        )
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
