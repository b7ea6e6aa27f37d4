"""GitHub's REST API for ``gh attestation verify --repo`` without ``--bundle``: a mock, because
GitHub's own service cannot run here.

gh fetches the attestations of a digest from ``https://api.github.com`` (a constant). It honours
``HTTPS_PROXY`` and ``SSL_CERT_FILE`` like any Go program, so this loopback proxy answers its
CONNECT for api.github.com with TLS under a test CA that only the child process trusts, and hands
each request to the loopback Sigstore, which lists the bundles that ``pack --attest`` uploaded to
it. Nothing else is proxied: a request for another host fails.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

API_HOST = "api.github.com"


def _issue(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for api.github.com signed by it; returns (ca, cert, key) files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pixi-pack-ci test CA for api.github.com")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, False, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, API_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(API_HOST)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = folder / "api-ca.pem", folder / "api-cert.pem", folder / "api-key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


class GitHubApiProxy:
    """``HTTPS_PROXY`` for gh: api.github.com is served by ``backend`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, folder: Path, backend: str) -> None:
        self.ca_file, cert, key = _issue(folder)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        self.backend = backend.removeprefix("http://")
        self.requests: list[str] = []  # "METHOD host/path" of every request gh made through us
        self._server: ThreadingHTTPServer | None = None

    def env(self, token: str = "gho_fake-token-for-the-mock-api") -> dict[str, str]:
        """What a gh child process needs to go through this proxy (and only trust its CA there)."""
        assert self._server is not None
        return {
            "HTTPS_PROXY": f"http://127.0.0.1:{self._server.server_address[1]}",
            "SSL_CERT_FILE": str(self.ca_file),
            "GH_TOKEN": token,
            "GH_HOST": "github.com",
            "NO_PROXY": "",
        }

    def start(self) -> GitHubApiProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_CONNECT(self) -> None:
                host = self.path.split(":")[0]
                proxy.requests.append(f"CONNECT {self.path}")
                if host != API_HOST:
                    self.send_error(403, f"the test proxy only serves {API_HOST}")
                    return
                self.send_response(200, "Connection established")
                self.end_headers()
                # From here on this connection speaks TLS as api.github.com: the handler's loop
                # reads the requests gh sends inside the tunnel.
                self.connection = proxy.tls.wrap_socket(self.connection, server_side=True)
                self.rfile = self.connection.makefile("rb")
                self.wfile = self.connection.makefile("wb")
                self.close_connection = False

            def do_GET(self) -> None:
                proxy.requests.append(f"GET {self.headers.get('Host')}{self.path}")
                backend = http.client.HTTPConnection(proxy.backend, timeout=30)
                backend.request("GET", self.path)
                response = backend.getresponse()
                body = response.read()
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


def environment_without_github(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus anything that would send gh elsewhere or log it in."""
    base = {k: v for k, v in (env or dict(os.environ)).items() if not k.startswith(("GH_", "GITHUB_"))}
    return {**base, "GH_NO_UPDATE_NOTIFIER": "1", "GH_PROMPT_DISABLED": "1"}
