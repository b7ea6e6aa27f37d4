"""``gcs://`` packages: against gcp-storage-emulator (PyPI), and Google's credential chain against a
token endpoint and a storage endpoint on 127.0.0.1.

What is not tested: storage.googleapis.com itself, and the credential kinds other than a
service-account key file (gcloud's user credentials, workload identity federation, the metadata
server), which google-auth resolves the same way for us as for any Google client.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from harness import DemoChannel, Project, assert_clean_error, run_cli
from object_stores import GcsEmulator
from support import ChannelServer
from test_s3 import everything, mixed_lockfile

BUCKET = "pixi-gcs"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, demo_channel: DemoChannel) -> Iterator[GcsEmulator]:
    server = GcsEmulator(tmp_path_factory.mktemp("gcs"))
    server.put_channel(BUCKET, "demo", demo_channel.path)
    yield server
    server.stop()


def test_gcs_and_http_packages_pack_and_unpack(project: Project, emulator: GcsEmulator, tmp_path: Path) -> None:
    lock = mixed_lockfile(project, tmp_path / "p", {"*": f"gcs://{BUCKET}/demo/",
                                                    "libgreet-1.2.3-h1234_0.conda": project.channel.url})  # fmt: skip
    env = {"STORAGE_EMULATOR_HOST": emulator.url}
    run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "env.tar", env=env, check=True)
    assert project.channel.server.requests["/linux-64/libgreet-1.2.3-h1234_0.conda"] == 1
    run_cli("unpack", tmp_path / "env.tar", "-o", tmp_path / "deploy", check=True)
    assert (tmp_path / "deploy/env/bin/hello-tool").is_file()
    # a missing object: one line, no retries needed to say so
    missing = tmp_path / "m"
    missing.mkdir()
    (missing / "pixi.lock").write_text(lock.read_text().replace(f"gcs://{BUCKET}/demo/", f"gcs://{BUCKET}/elsewhere/"))
    line = assert_clean_error(run_cli("pack", missing, "-p", "linux-64", "-o", tmp_path / "m.tar", env=env), code=1)
    assert f": gcs://{BUCKET}/elsewhere/" in line and "answered 404" in line


def test_gcs_https_channel_mirrored_to_a_bucket(project: Project, emulator: GcsEmulator, tmp_path: Path) -> None:
    lock = mixed_lockfile(project, tmp_path / "p", {"*": "https://conda.invalid/demo/"})
    config = tmp_path / "config.toml"
    config.write_text(f'[mirrors]\n"https://conda.invalid/demo" = ["gcs://{BUCKET}/demo"]\n')
    run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "env.tar", "-c", config,
            env={"STORAGE_EMULATOR_HOST": emulator.url}, check=True)  # fmt: skip


class TokenEndpoint:
    """Google's OAuth token endpoint as a service account key uses it: a JWT assertion signed with
    the key in, an access token out."""

    def __init__(self, public_key: Any, token: str) -> None:
        self.assertions: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                # signed by the account's key (the audience is google-auth's business)
                claims = jwt.decode(form["assertion"][0], public_key, algorithms=["RS256"],
                                    options={"verify_aud": False})  # fmt: skip
                endpoint.assertions.append(claims)
                body = json.dumps({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/token"


def test_gcs_token_from_a_service_account_key(project: Project, tmp_path: Path) -> None:
    """GOOGLE_APPLICATION_CREDENTIALS names a key; the token it is exchanged for (read_only scope) is
    what the storage endpoint gets, fetched once for all downloads, and never printed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    access_token = f"ya29.test-access-token-{int(time.time())}"
    tokens = TokenEndpoint(key.public_key(), access_token)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()  # fmt: skip
    account = {"type": "service_account", "project_id": "demo", "private_key_id": "k1", "private_key": pem,
               "client_email": "packer@demo.iam.gserviceaccount.com", "client_id": "1",
               "token_uri": tokens.url}  # fmt: skip
    (tmp_path / "key.json").write_text(json.dumps(account))
    storage_root = tmp_path / "storage"
    shutil.copytree(project.channel.path, storage_root / BUCKET / "demo")
    storage = ChannelServer(storage_root).start()
    try:
        storage.required_auth = {"/": f"Bearer {access_token}"}
        lock = mixed_lockfile(project, tmp_path / "p", {"*": f"gcs://{BUCKET}/demo/"})
        env = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "key.json"), "STORAGE_EMULATOR_HOST": storage.url}
        proc = run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "env.tar", "-vv", "--json", env=env)
        assert proc.returncode == 0, proc.stderr.decode()
        assert storage.requests[f"/{BUCKET}/demo/linux-64/hello-tool-1.0-0.conda"] == 1
        assert len(tokens.assertions) == 1
        assert tokens.assertions[0]["scope"] == "https://www.googleapis.com/auth/devstorage.read_only"
        assert access_token not in everything(proc)
        # a token the storage refuses: one line saying so
        storage.required_auth = {"/": "Bearer another"}
        line = assert_clean_error(run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "f.tar", env=env))
        assert "answered 401 (the Google credentials were refused)" in line and access_token not in line
    finally:
        storage.stop()
        tokens.httpd.shutdown()


def test_gcs_without_credentials_is_one_line(project: Project, tmp_path: Path) -> None:
    """No emulator, no credentials anywhere (the tests switch the metadata-server probe off): the
    run stops before any request, naming where credentials come from."""
    lock = mixed_lockfile(project, tmp_path / "p", {"*": f"gcs://{BUCKET}/demo/"})
    line = assert_clean_error(run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "e.tar"), code=1)
    assert "no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS" in line
