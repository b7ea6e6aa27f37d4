"""Helpers of the image tests: a channel of small packages, a Debian busybox base image made with
umoci, a real registry (Debian's docker-registry) on 127.0.0.1, running an image with umoci + runc,
and podman with a store of its own. Tests that need a tool skip, naming it, when it is missing."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rattler
from support import ChannelServer, PackageSpec, channel_records, write_lockfile

GREET = (
    "#!/bin/sh\necho hello from greeter\necho CONDA_PREFIX=$CONDA_PREFIX\necho FOO=$FOO\n"
    'echo HELLO_DATA=$HELLO_DATA\necho PATH=$PATH\ncat "$CONDA_PREFIX/share/libdata/data.txt"\n'
)


def image_specs() -> list[PackageSpec]:
    return [
        PackageSpec("greeter", depends=["libdata"], files={"bin/greet": GREET}, executable=("bin/greet",)),
        PackageSpec("libdata", version="1.0", files={"share/libdata/data.txt": "libdata 1.0\n"}),
        PackageSpec("libdata", version="1.1", files={"share/libdata/data.txt": "libdata 1.1\n"}),
        PackageSpec("envvars", files={"etc/conda/env_vars.d/envvars.json": '{"FOO": "bar"}\n'}),
        PackageSpec(
            "activator",
            files={"etc/conda/activate.d/activator.sh": 'export HELLO_DATA="$CONDA_PREFIX/share/hello"\n'},
        ),
        PackageSpec("other", subdir="noarch", files={"share/other/other.txt": "other\n"}),
    ]


class ImageChannel:
    """The channel of :func:`image_specs`, served, and projects locked to some of its packages."""

    def __init__(self, path: Path, server: ChannelServer) -> None:
        self.path, self.server = path, server
        self.records = channel_records(path, server.url)

    def pick(self, *wanted: str, subdir: str = "linux-64") -> list[rattler.RepoDataRecord]:
        """Records by ``name`` or ``name=version`` (from ``subdir`` and noarch)."""
        out = []
        for want in wanted:
            name, _, version = want.partition("=")
            out += [
                r
                for r in self.records[subdir] + self.records.get("noarch", [])
                if r.name.normalized == name and (not version or str(r.version) == version)
            ]
        return out

    def project(self, folder: Path, *wanted: str, platforms: tuple[str, ...] = ("linux-64",)) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pixi.toml").write_text('[workspace]\nname = "img"\nchannels = []\nplatforms = []\n')
        envs = {"default": {p: self.pick(*wanted, subdir="linux-64") for p in platforms}}
        write_lockfile(folder / "pixi.lock", envs, self.server.url)
        return folder


def image_json(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """``pixi-pack-ci image ARGS --json -q``, which must succeed: its JSON."""
    from harness import run_cli

    proc = run_cli("image", *args, "--json", "-q", env=env, cwd=cwd, check=True)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages; scripts/test.sh installs them as root)")


def busybox_base(folder: Path, tag: str = "1") -> Path:
    """An OCI layout with a static busybox as /bin/sh, made by umoci (not by the code under test)."""
    need("umoci", "busybox")
    root = folder / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "", root / "bin" / "busybox")
    for applet in ("sh", "cat", "env", "echo"):
        os.symlink("busybox", root / "bin" / applet)
    layout = folder / "base"
    subprocess.run(["umoci", "init", "--layout", layout], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:{tag}"], check=True)
    subprocess.run(["umoci", "insert", "--image", f"{layout}:{tag}", root, "/"], check=True, capture_output=True)
    return layout


def run_image(layout: Path, tag: str, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``umoci unpack`` the image into a bundle and ``runc run`` its entrypoint (no terminal)."""
    need("umoci", "runc")
    bundle = work / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", bundle], check=True, capture_output=True)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    if args:
        config["process"]["args"] = list(args)
    config_path.write_text(json.dumps(config))
    name = f"pixi-pack-ci-test-{os.getpid()}-{time.monotonic_ns()}"
    return subprocess.run(["runc", "run", "--bundle", bundle, name], capture_output=True, text=True, timeout=60)


@contextmanager
def podman_store() -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """Debian's podman with an image store of its own, removed afterwards: ``podman(*args)``.
    The machine's /var/lib/containers and containers.conf are never read or written: vfs
    storage, runc, cgroupfs, events in a file, no network. ulimits are set low because podman's
    rootful defaults (1048576 open files) are more than a container running the tests may grant.
    The folder is short: conmon's sockets live under it, and socket paths are limited to 108 bytes."""
    need("podman")
    folder = Path(tempfile.mkdtemp(prefix="podman-"))
    try:
        (folder / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{folder}/root"\nrunroot = "{folder}/run"\n'
        )
        (folder / "containers.conf").write_text(
            '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n'
        )
        env = {
            **os.environ,
            "CONTAINERS_CONF": str(folder / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(folder / "storage.conf"),
        }
        common = ["podman", "--root", f"{folder}/root", "--runroot", f"{folder}/run", "--tmpdir", f"{folder}/tmp"]

        def podman(*args: str | Path) -> subprocess.CompletedProcess[str]:
            command = [*common, *map(str, args)]
            return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

        yield podman
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str
    log: Path

    def uploads(self) -> list[str]:
        """Blob uploads the registry finished (its access log's ``PUT …/blobs/uploads/…?digest=``)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if '"PUT /v2/' in line and "/blobs/uploads/" in line and " 201 " in line]


@contextmanager
def docker_registry(folder: Path, auth: str = "") -> Iterator[Registry]:
    """Debian's docker-registry (distribution 2.8) on a free port of 127.0.0.1, stopped by its PID;
    ``auth`` is its ``auth:`` section (YAML), none by default."""
    need("docker-registry")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    log = folder / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except urllib.error.HTTPError:  # 401: up, and asking for a token
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"docker-registry did not start: {log.read_text()[-500:]}") from None
                time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class TokenServer:
    """A token service as GHCR's and GitLab's (distribution's ``auth.token``): Basic credentials
    in, an ES256 JWT out whose ``x5c`` certificate the registry trusts. Wrong credentials get a
    token that allows pulling only, as real services answer. ``authorizations`` records the
    ``Authorization`` header of every request (None: anonymous).

    ``one_repository``: a token grants the first repository asked for only, as token services
    that read a single ``scope`` do; distribution then refuses a cross-repository mount (401).
    ``refresh_token``: also answer OAuth2 ``POST`` requests (``grant_type=refresh_token``, how
    Docker uses an identity token) carrying that token, as the good user."""

    def __init__(
        self, folder: Path, user: str, password: str, *, one_repository: bool = False, refresh_token: str = ""
    ) -> None:
        import datetime
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pixi-pack-ci test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256())
        )  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        self.bundle = folder / "root.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.one_repository = one_repository
        self.refresh_token = refresh_token
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []
        #: The form of every OAuth2 POST.
        self.forms: list[dict[str, list[str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def answer(self, status: int, value: dict[str, str]) -> None:
                body = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server.requests.append(self.path)
                authorization = self.headers.get("Authorization")
                server.authorizations.append(authorization)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                self.answer(200, {"token": server.token(query, authorization == server.expected)})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                server.forms.append(form)
                server.authorizations.append(self.headers.get("Authorization"))
                token = form.get("refresh_token", [""])[0]
                if form.get("grant_type") != ["refresh_token"] or not server.refresh_token:
                    self.answer(400, {"error": "unsupported_grant_type"})
                    return
                # OAuth2 asks for the scopes space-separated in one ``scope`` field.
                query = {**form, "scope": " ".join(form.get("scope", [])).split()}
                self.answer(200, {"access_token": server.token(query, token == server.refresh_token)})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, query: dict[str, list[str]], good: bool) -> str:
        import jwt

        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            if self.one_repository and access and access[0]["name"] != name:
                continue
            allowed = actions.split(",") if good else ["pull"]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        claims = {
            "iss": "pixi-pack-ci-test", "sub": "tester", "aud": query.get("service", [""])[0],
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access,
        }  # fmt: skip
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": [self.x5c]})

    def auth_section(self) -> str:
        return (
            f"auth:\n  token:\n    realm: {self.url}\n    service: test-registry\n"
            f"    issuer: pixi-pack-ci-test\n    rootcertbundle: {self.bundle}\n"
        )

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FaultyProxy:
    """An HTTP proxy in front of a registry that fails requests as scripted: ``faults`` maps
    ``"METHOD path-fragment"`` to actions consumed one per matching request: ``"reset"`` (the
    body is read, then the connection closed with no answer: a reset mid-upload), ``"partial"``
    (the request and half its body go to the registry, then both connections are closed: the
    registry's upload session holds part of the blob) or a status code (answered with no body).
    ``rewrites`` maps a fragment of a request path to what the registry gets instead. ``seen``
    lists every request as ``"METHOD path"`` (as the client sent it)."""

    def __init__(self, upstream: str) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.faults: dict[str, list[str]] = {}
        self.rewrites: dict[str, str] = {}
        self.seen: list[str] = []
        proxy = self

        def forward_part(handler: BaseHTTPRequestHandler, path: str, length: int) -> None:
            """The request line, headers and half the body to the registry over a socket of
            its own, then that socket and the client's closed mid-body."""
            part = handler.rfile.read(length // 2)
            head = f"{handler.command} {path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in handler.headers.items() if k.lower() != "connection"
            )
            host, _, port = upstream.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=30) as up:
                up.sendall(head.encode() + b"\r\n" + part)
                time.sleep(0.3)  # the registry reads what came before it sees the connection go
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = f"{self.command} {self.path}"
                proxy.seen.append(request)
                action = proxy.take(request)
                path = self.path
                for fragment, replacement in proxy.rewrites.items():
                    path = path.replace(fragment, replacement)
                if action == "partial":
                    forward_part(self, path, length)
                    return
                body = self.rfile.read(length) if length else b""
                if action == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action is not None:
                    self.send_response(int(action))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def take(self, request: str) -> str | None:
        for key, actions in self.faults.items():
            method, _, fragment = key.partition(" ")
            if request.startswith(method + " ") and fragment in request and actions:
                return actions.pop(0)
        return None

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
