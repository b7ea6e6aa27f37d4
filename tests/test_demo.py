"""The README's first command, ``bash examples/demo/run.sh``, run as written (on a copy of the demo,
so the checkout's ``examples/demo/out`` is left alone, and with this test run's venv, so the
script does not make one)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from helpers.image_support import need

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"


def test_readme_names_the_demo_script() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert "bash examples/demo/run.sh" in [line.strip() for block in blocks for line in block.splitlines()]


def test_demo_script_packs_unpacks_runs_and_builds_an_image(tmp_path: Path) -> None:
    need("skopeo")
    copy = tmp_path / "examples" / "demo"
    shutil.copytree(DEMO, copy, ignore=shutil.ignore_patterns("out"))
    env = {**os.environ, "PIXI_PACK_CI_VENV": sys.prefix}
    proc = subprocess.run(["bash", str(copy / "run.sh")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = copy / "out"
    assert f"Hello from a pixi-pack-ci environment in {out / 'deploy' / 'env'}" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"oci-layout:{out / 'image'}@sha256:"), last
    digest = last.rsplit("@", 1)[1]
    # The digest printed is the one in the layout the script wrote, as skopeo reads it.
    inspected = subprocess.run(
        ["skopeo", "inspect", f"oci:{out / 'image'}:latest"], capture_output=True, text=True, check=True
    )
    assert json.loads(inspected.stdout)["Digest"] == digest
    assert (out / "environment.tar").is_file()
