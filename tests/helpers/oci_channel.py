"""An OCI registry on 127.0.0.1 holding conda packages the way channel mirrors store them.

The registry is Debian's ``docker-registry`` (the CNCF distribution registry 2.8, fetched by
``scripts/tools.sh``), optionally behind a token service of ours as ghcr.io is: a ``Bearer
realm=…,service=…`` challenge, JWTs signed with a key whose certificate the registry trusts,
anonymous pull tokens for repositories under ``public/`` and pull tokens for everything else only
with the right user and password.

:func:`push_package` lays a package out as conda-oci-mirror pushes ``ghcr.io/channel-mirrors``:
repository ``CHANNEL/SUBDIR/NAME``, tag ``VERSION-BUILD`` (``+ ! =`` as ``__p__ __e__ __eq__``), an
OCI image manifest whose config is ``{}`` (``application/vnd.unknown.config.v1+json``) and whose
layers are the package (``application/vnd.conda.package.v2``, ``.v1`` for ``.tar.bz2``), its
``info/`` folder as ``info.tar.gz`` and its ``info/index.json``, each titled.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import secrets
import tarfile
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import rattler.package_streaming
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from object_stores import _Process

ROOT = Path(__file__).resolve().parents[2]  # the repository (this is tests/helpers/)
REGISTRY = ROOT / ".tools/debian/usr/bin/docker-registry"
SERVICE = "pixi-pack-ci-test-registry"
ISSUER = "pixi-pack-ci-test-token-service"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


class TokenService:
    """The registry's token endpoint (distribution's token auth: JWTs with an ``x5c`` chain)."""

    def __init__(self, workdir: Path, user: str, password: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.cert_file = workdir / "token-cert.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: Counter[str] = Counter()
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                scope = query.get("scope", [""])[0]
                auth = self.headers.get("Authorization")
                service.requests["with credentials" if auth else "anonymous"] += 1
                if auth is not None and auth != expected:
                    return self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                _kind, repository, _actions = [*scope.split(":"), "", "", ""][:3]
                allowed = repository.startswith("public/") or auth == expected
                self._answer(200, {"token": service.token(repository, ["pull"] if allowed else []),
                                   "expires_in": 300})  # fmt: skip

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/token"

    def token(self, repository: str | list[str], actions: list[str]) -> str:
        """A registry token for ``actions`` on ``repository`` (or each of several)."""
        now = int(time.time())
        names = [repository] if isinstance(repository, str) else repository
        access = [{"type": "repository", "name": n, "actions": actions} for n in names] if actions else []
        claims = {"iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}  # fmt: skip
        x5c = [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": x5c})

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Registry(_Process):
    """docker-registry on 127.0.0.1, storing in ``workdir``; behind ``tokens`` when given."""

    def __init__(self, workdir: Path, tokens: TokenService | None = None) -> None:
        if not REGISTRY.is_file():
            raise RuntimeError(f"{REGISTRY} is missing: run bash scripts/tools.sh (or scripts/test.sh)")
        self.tokens = tokens
        config = workdir / "registry.yml"
        auth = ""
        if tokens is not None:
            auth = (f"auth:\n  token:\n    realm: {tokens.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
                    f"    rootcertbundle: {tokens.cert_file}\n")  # fmt: skip
        text = (
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:{port}\n" + auth
        )
        super().__init__([str(REGISTRY), "serve", str(config)], workdir, "docker registry",
                         config=text, config_file=config)  # fmt: skip

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _push_headers(self, repository: str) -> dict[str, str]:
        if self.tokens is None:
            return {}
        return {"Authorization": f"Bearer {self.tokens.token(repository, ['pull', 'push'])}"}

    def push_package(self, channel_path: str, package: Path, subdir: str) -> str:
        """Push ``package`` as a channel mirror does; returns ``repository:tag``."""
        name, version, build = package.name.removesuffix(".conda").removesuffix(".tar.bz2").rsplit("-", 2)
        repository = f"{channel_path.strip('/')}/{subdir}/{'zzz' + name if name.startswith('_') else name}"
        tag = f"{version}-{build}".replace("+", "__p__").replace("!", "__e__").replace("=", "__eq__")
        media = (
            "application/vnd.conda.package.v2"
            if package.name.endswith(".conda")
            else "application/vnd.conda.package.v1"
        )
        info_tgz, index_json = _info_layers(package)
        headers = self._push_headers(repository)
        with httpx.Client(base_url=f"http://{self.host}", headers=headers, timeout=60) as client:
            layers = [
                self._blob(client, repository, package.read_bytes(), media, package.name),
                self._blob(client, repository, info_tgz, "application/vnd.conda.info.v1.tar+gzip", "info.tar.gz"),
                self._blob(client, repository, index_json, "application/vnd.conda.info.index.v1+json",
                           "info/index.json"),
            ]  # fmt: skip
            config = self._blob(client, repository, b"{}", "application/vnd.unknown.config.v1+json", None)
            manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config, "layers": layers}
            resp = client.put(f"/v2/{repository}/manifests/{tag}", content=json.dumps(manifest).encode(),
                              headers={"Content-Type": MANIFEST_TYPE})  # fmt: skip
            resp.raise_for_status()
        return f"{repository}:{tag}"

    @staticmethod
    def _blob(client: httpx.Client, repository: str, data: bytes, media: str, title: str | None) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = client.post(f"/v2/{repository}/blobs/uploads/")
        start.raise_for_status()
        location = start.headers["Location"]
        joiner = "&" if "?" in location else "?"
        client.put(f"{location}{joiner}digest={digest}", content=data,
                   headers={"Content-Type": "application/octet-stream"}).raise_for_status()  # fmt: skip
        descriptor: dict[str, Any] = {"mediaType": media, "digest": digest, "size": len(data)}
        if title is not None:
            descriptor["annotations"] = {"org.opencontainers.image.title": title}
        return descriptor

    def delete_blob(self, repository: str, digest: str) -> None:
        with httpx.Client(base_url=f"http://{self.host}", headers=self._push_headers(repository)) as client:
            client.delete(f"/v2/{repository}/blobs/{digest}")


def _info_layers(package: Path) -> tuple[bytes, bytes]:
    """The package's ``info/`` folder as a deterministic tar.gz, and its ``info/index.json``."""
    with tempfile.TemporaryDirectory() as tmp:
        rattler.package_streaming.extract(package, Path(tmp))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(Path(tmp) / "info", arcname="info")
        return buffer.getvalue(), (Path(tmp) / "info" / "index.json").read_bytes()
