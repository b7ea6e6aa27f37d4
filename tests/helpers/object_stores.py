"""Real object stores on 127.0.0.1 for the ``s3://`` and ``gcs://`` tests.

* :class:`MotoS3`: moto's server mode (PyPI ``moto[server]``), with its IAM checks on: every
  request after the set-up must carry a SigV4 signature of an access key made in it, so wrong keys
  are refused as AWS refuses them (403 ``InvalidAccessKeyId`` / ``SignatureDoesNotMatch``).
* :class:`GcsEmulator`: ``gcp-storage-emulator`` (PyPI), a GCS JSON/XML API server; it checks no
  credentials (no emulator does).
* :class:`FaultyProxy`: forwards to one of them byte for byte (``Host`` kept, so signatures still
  match) and answers 500 where told: neither server can be made to fail on purpose.

Each runs as its own process or thread and is stopped by the fixture that started it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within 60 s: {log.read_text()[-2000:]}")


class _Process:
    """A server process on a free port of 127.0.0.1; ``{port}`` in ``argv`` and in ``config``'s text
    (written to ``config_file``) is that port."""

    def __init__(
        self, argv: list[str], workdir: Path, what: str, env: dict[str, str] | None = None,
        config: str = "", config_file: Path | None = None,
    ) -> None:  # fmt: skip
        self.port = free_port()
        self.log = workdir / f"{what.replace(' ', '-')}.log"
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        if config_file is not None:
            config_file.write_text(config.replace("{port}", str(self.port)))
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env={**os.environ, **(env or {})}
            )
        _wait_for_port(self.port, self.proc, self.log, what)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class MotoS3(_Process):
    """moto's S3, IAM-checked. ``key_id``/``secret`` are an access key allowed everything."""

    REGION = "eu-central-1"

    def __init__(self, workdir: Path) -> None:
        # The first three requests (the IAM user, its policy, its key) go unchecked; every later one
        # must be signed with a key moto knows.
        super().__init__(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"],
            workdir,
            "moto server",
            env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"},
        )
        import boto3

        iam = boto3.client("iam", endpoint_url=self.url, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip
        iam.create_user(UserName="ci")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="ci", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="ci")["AccessKey"]
        self.key_id: str = key["AccessKeyId"]
        self.secret: str = key["SecretAccessKey"]
        self.s3 = boto3.client("s3", endpoint_url=self.url, region_name=self.REGION,
                               aws_access_key_id=self.key_id, aws_secret_access_key=self.secret)  # fmt: skip

    def put_channel(self, bucket: str, prefix: str, channel: Path, files: list[str] | None = None) -> None:
        """Upload ``channel``'s subdir folders (all package files, or just ``files``) under ``prefix``."""
        existing = {b["Name"] for b in self.s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.REGION})
        for path in sorted(channel.glob("*/*")):
            if path.suffix in (".conda", ".bz2") and (files is None or path.name in files):
                key = f"{prefix.strip('/')}/{path.parent.name}/{path.name}".lstrip("/")
                self.s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


class GcsEmulator(_Process):
    """gcp-storage-emulator, in memory."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(
            [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", "{port}",
             "--in-memory", "--quiet"],
            workdir,
            "gcs emulator",
        )  # fmt: skip

    def put_channel(self, bucket: str, prefix: str, channel: Path, files: list[str] | None = None) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            if client.get(f"/storage/v1/b/{bucket}").status_code == 404:
                client.post("/storage/v1/b", json={"name": bucket}).raise_for_status()
            for path in sorted(channel.glob("*/*")):
                if path.suffix in (".conda", ".bz2") and (files is None or path.name in files):
                    name = f"{prefix.strip('/')}/{path.parent.name}/{path.name}".lstrip("/")
                    client.post(f"/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": name},
                                content=path.read_bytes()).raise_for_status()  # fmt: skip


class FaultyProxy:
    """An HTTP proxy in front of ``target`` that answers 500 for the paths in ``always_fail`` and
    forwards everything else unchanged, recording each request line."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.always_fail: set[str] = set()
        self.requests: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                proxy.requests[path] += 1
                if path in proxy.always_fail:
                    body = b"<Error><Code>InternalError</Code></Error>"
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                conn.putrequest("GET", self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    conn.putheader(name, value)
                conn.endheaders()
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
