"""The test harness that is not a fixture: the demo channel's packages, projects, and running the
CLI as a user does (a subprocess, one-line errors checked). conftest.py turns these into fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import (
    PLACEHOLDER,
    ChannelServer,
    PackageSpec,
    basic_auth,
    channel_records,
    write_lockfile,
)

ROOT = Path(__file__).resolve().parents[2]  # the repository (this is tests/helpers/)


def demo_specs() -> list[PackageSpec]:
    specs = [
        PackageSpec(
            "hello-tool",
            depends=["libgreet >=1"],
            files={"bin/hello-tool": "#!/bin/sh\necho hello from hello-tool\n"},
            executable=("bin/hello-tool",),
        ),
        PackageSpec("libgreet", version="1.2.3", build="h1234_0", files={"lib/libgreet.so.1": os.urandom(2048)}),
        PackageSpec(
            "placeholder-text",
            archive="tar.bz2",
            files={
                "bin/where-am-i": f"#!/bin/sh\necho {PLACEHOLDER}\n",
                "etc/placeholder-text/config.txt": f"prefix={PLACEHOLDER}\ndata={PLACEHOLDER}/share\n",
            },
            executable=("bin/where-am-i",),
            placeholders={"bin/where-am-i": "text", "etc/placeholder-text/config.txt": "text"},
        ),
        PackageSpec(
            "placeholder-bin",
            archive="tar.bz2",
            files={"lib/placeholder-bin.dat": b"\x7fELF\x00\x01" + PLACEHOLDER.encode() + b"/lib\x00tail\x00"},
            placeholders={"lib/placeholder-bin.dat": "binary"},
        ),
        PackageSpec(
            "symlinker",
            files={"bin/real-tool": "#!/bin/sh\necho real\n", "lib/libsym.so.1": b"\x00sym"},
            symlinks={"bin/tool-link": "real-tool", "lib/libsym.so": "libsym.so.1"},
            executable=("bin/real-tool",),
        ),
    ]
    for i in range(1, 13):
        specs.append(
            PackageSpec(
                f"pkg{i:02d}", version=f"0.{i}", build=f"h{i:04x}_0", archive="tar.bz2" if i % 3 == 0 else "conda"
            )
        )
    specs.append(PackageSpec("noarch-data", subdir="noarch", files={"share/noarch-data/data.json": "{}\n"}))
    specs.append(PackageSpec("noarch-old", subdir="noarch", archive="tar.bz2"))
    for i in range(1, 5):
        specs.append(PackageSpec(f"noarch{i:02d}", subdir="noarch", version=f"2.{i}"))
    specs.append(PackageSpec("winpkg", subdir="win-64", files={"Library/bin/winpkg.txt": "win\n"}))
    specs.append(PackageSpec("macpkg", subdir="osx-arm64", files={"share/macpkg.txt": "mac\n"}))
    return specs


@dataclass
class DemoChannel:
    path: Path
    server: ChannelServer

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class Project:
    dir: Path
    lockfile: Path
    channel: DemoChannel
    linux_packages: list[str]


def make_project(directory: Path, channel: DemoChannel) -> Project:
    records = channel_records(channel.path, channel.url)
    noarch = records.get("noarch", [])
    linux = records["linux-64"] + noarch
    envs = {
        "default": {
            "linux-64": linux,
            "win-64": records["win-64"] + noarch,
            "osx-arm64": records["osx-arm64"] + noarch,
        },
        "prod": {"linux-64": [r for r in linux if r.name.normalized in ("hello-tool", "libgreet", "noarch-data")]},
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pixi.toml").write_text('[workspace]\nname = "demo"\nchannels = []\nplatforms = []\n')
    lock = write_lockfile(directory / "pixi.lock", envs, channel.url)
    return Project(directory, lock, channel, sorted(r.file_name for r in linux))


def credentialed_project(project: Project, directory: Path, user: str, password: str) -> Path:
    """The project's linux-64 environment with ``user:password`` in every lockfile URL; the server
    then answers only requests that carry them."""
    project.channel.server.required_auth = {"/": basic_auth(user, password)}
    url = project.channel.url.replace("http://", f"http://{user}:{password}@")
    records = channel_records(project.channel.path, url)
    write_lockfile(directory / "pixi.lock", {"default": {"linux-64": records["linux-64"] + records["noarch"]}}, url)
    (directory / "pixi.toml").write_text('[workspace]\nname = "p"\nchannels = []\nplatforms = []\n')
    return directory


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PIXI_PACK_CI_DOWNLOAD_ATTEMPTS", "3")
    proc = subprocess.run(
        [sys.executable, "-m", "pixi_pack_ci.core", *map(str, args)],
        cwd=cwd,
        input=input,
        capture_output=True,
        env=full_env,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"pixi-pack-ci {args} failed ({proc.returncode}):\n{proc.stderr.decode()}")
    return proc


def assert_clean_error(proc: subprocess.CompletedProcess[bytes], *, code: int | tuple[int, ...] = (1, 2)) -> str:
    """A failed run: expected exit code, one line on stderr, no traceback. Returns the line."""
    codes = (code,) if isinstance(code, int) else code
    err = proc.stderr.decode()
    assert proc.returncode in codes, f"exit {proc.returncode}, stderr:\n{err}"
    assert "Traceback" not in err, err
    # Workflow commands (::add-mask::, ::error ...::) are read by the GitHub runner, not shown as lines.
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("::")]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert lines[0].startswith("pixi-pack-ci: error: "), lines[0]
    return lines[0]


def cache_entries(cache: Path) -> list[str]:
    """File names of the packages in a download cache (not its tag or its ``.verified`` records)."""
    return sorted(
        p.name
        for p in cache.rglob("*")
        if p.is_file() and p.name != "CACHEDIR.TAG" and p.relative_to(cache).parts[0] != ".verified"
    )


def pack_ok(
    manifest: Path, output: Path | str, *extra: str | Path, platform: str = "linux-64", **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    """``pixi-pack-ci pack MANIFEST -p PLATFORM -o OUTPUT ...`` that must succeed."""
    return run_cli("pack", manifest, "-p", platform, "-o", output, *extra, check=True, **kwargs)


PY = f"{sys.version_info.major}.{sys.version_info.minor}"
