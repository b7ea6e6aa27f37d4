"""Fixtures only. What they build on, and what tests import, is in tests/helpers/ (harness.py: the
demo channel, projects, running the CLI; support.py: packages, channels, lockfiles, servers)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    PY,
    DemoChannel,
    Project,
    demo_specs,
    make_project,
)
from image_support import ImageChannel, busybox_base, image_specs
from signing import Sigstore
from sigstore_double import FakeSigstore
from support import (
    PLACEHOLDER,
    ChannelServer,
    PackageSpec,
    build_channel,
)


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


@pytest.fixture
def project(tmp_path: Path, channel: DemoChannel) -> Project:
    return make_project(tmp_path / "project", channel)


@pytest.fixture(scope="session")
def image_channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageChannel]:
    """The image tests' packages (``image_specs``), served, for projects locked to some of them."""
    base = tmp_path_factory.mktemp("image-channel")
    build_channel(base / "channel", image_specs(), base / "work")
    server = ChannelServer(base / "channel").start()
    yield ImageChannel(base / "channel", server)
    server.stop()


@pytest.fixture(scope="session")
def base_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox base image as an OCI layout, made by umoci (skips without umoci or busybox)."""
    return busybox_base(tmp_path_factory.mktemp("base"))


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


@pytest.fixture
def no_ci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that describe their own CI environment: a real one around them must not leak in."""
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
