"""Helpers of the image tests: a channel of small packages, a Debian busybox base image made with
umoci, a real registry (Debian's docker-registry) on 127.0.0.1, and running an image with
umoci + runc. Tests that need a tool skip, naming it, when it is missing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import PackageSpec

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
def docker_registry(folder: Path) -> Iterator[Registry]:
    """Debian's docker-registry (distribution 2.8) on a free port of 127.0.0.1, stopped by its PID."""
    need("docker-registry")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
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
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"docker-registry did not start: {log.read_text()[-500:]}") from None
                time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
