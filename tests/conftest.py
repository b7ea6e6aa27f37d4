from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from signing import Sigstore
from sigstore_double import FakeSigstore
from support import (
    PLACEHOLDER,
    ChannelServer,
    PackageSpec,
    basic_auth,
    build_channel,
    channel_records,
    write_lockfile,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _record_key_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The cache's per-user record key lives in a folder of this test session, not in the real
    ~/.local/state (tests that need another key set PIXI_PACK_CI_STATE_DIR themselves)."""
    os.environ.setdefault("PIXI_PACK_CI_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(autouse=True, scope="session")
def _no_machine_credentials(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Packs read credentials and cloud settings from the machine as rattler does (keyring, netrc, AWS
    and gcloud files, cloud metadata servers): the tests see none of this machine's, and never probe
    a metadata address (tests that need a source set it themselves)."""
    empty = tmp_path_factory.mktemp("no-credentials")
    for name, value in {
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "NETRC": os.devnull,
        "AWS_CONFIG_FILE": str(empty / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "CLOUDSDK_CONFIG": str(empty / "gcloud"),
        "NO_GCE_CHECK": "true",
    }.items():
        os.environ.setdefault(name, value)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "RATTLER_AUTH_FILE"):  # fmt: skip
        os.environ.pop(name, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip tests marked ``posix`` on other systems (Windows): what they exercise does not exist
    there, so they would fail for that reason alone."""
    if os.name == "posix":
        return
    skip = pytest.mark.skip(reason="needs a POSIX system")
    for item in items:
        if item.get_closest_marker("posix"):
            item.add_marker(skip)


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


@pytest.fixture(scope="session")
def demo_channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoChannel]:
    base = tmp_path_factory.mktemp("channel")
    channel = base / "channel"
    build_channel(channel, demo_specs(), base / "work")
    server = ChannelServer(channel).start()
    yield DemoChannel(channel, server)
    server.stop()


@pytest.fixture
def channel(demo_channel: DemoChannel) -> DemoChannel:
    demo_channel.server.reset()
    return demo_channel


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


@pytest.fixture
def project(tmp_path: Path, channel: DemoChannel) -> Project:
    return make_project(tmp_path / "project", channel)


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


@pytest.fixture(scope="session")
def sigstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sigstore]:
    fake = FakeSigstore()
    fake.start()
    d = tmp_path_factory.mktemp("sigstore")
    (d / "trust_config.json").write_text(json.dumps(fake.client_trust_config()))
    (d / "trusted_root.json").write_text(json.dumps(fake.trusted_root()))
    (d / "trusted_root.jsonl").write_text(json.dumps(fake.trusted_root(), separators=(",", ":")) + "\n")
    yield Sigstore(fake, d / "trust_config.json", d / "trusted_root.json", d / "trusted_root.jsonl")
    fake.stop()


PY = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="session")
def python_channel(tmp_path_factory: pytest.TempPathFactory, demo_channel: DemoChannel) -> Path:
    """A channel with a stand-in ``python`` whose interpreter is this test's Python, relocated by placeholder."""
    base = tmp_path_factory.mktemp("pychannel")
    channel = demo_channel.path / "py"
    wrapper = (
        f'#!/bin/sh\nPYTHONPATH="{PLACEHOLDER}/lib/python{PY}/site-packages${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec "{sys.executable}" "$@"\n'
    )
    spec = PackageSpec(
        "python",
        version=f"{PY}.7",
        build="h0_0_cpython",
        archive="tar.bz2",
        files={f"bin/python{PY}": wrapper, f"lib/python{PY}/site-packages/README.txt": "site\n"},
        executable=(f"bin/python{PY}",),
        placeholders={f"bin/python{PY}": "text"},
    )
    build_channel(channel, [spec], base / "work")
    return channel
