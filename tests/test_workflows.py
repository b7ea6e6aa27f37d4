"""The action and the workflows pass zizmor (nothing medium or above) and actionlint (clean;
it reads action.yml through the workflows' `uses: ./`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is a test dependency (pip install -e '.[test]')"
    return found


def test_zizmor_finds_nothing_medium_or_above() -> None:
    proc = subprocess.run(
        [tool("zizmor"), "--offline", "--min-severity", "medium", "--config", ".github/zizmor.yml", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed ./action.yml" in proc.stderr, "zizmor must audit the composite action too"


def test_zizmor_still_catches_template_injection(tmp_path: Path) -> None:
    # The audit above passing means something only if zizmor would flag what we avoid.
    bad = tmp_path / "action.yml"
    bad.write_text(
        "name: bad\ndescription: d\ninputs:\n  x: {description: x}\nruns:\n  using: composite\n  steps:\n"
        "    - shell: bash\n      run: echo ${{ inputs.x }}\n"
    )
    proc = subprocess.run([tool("zizmor"), "--offline", str(bad)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "template-injection" in proc.stdout


def test_actionlint_is_clean() -> None:
    workflows = sorted(p.name for p in (REPO / ".github" / "workflows").glob("*.yml"))
    assert {"ci.yml", "test-action.yml", "pack-slsa3.yml", "release.yml"} <= set(workflows)
    proc = subprocess.run([tool("actionlint"), "-oneline"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_reads_action_yml_through_uses_dot(tmp_path: Path) -> None:
    # A workflow passing an input the action does not declare must be caught.
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(REPO / "action.yml", repo / "action.yml")
    (repo / ".github" / "workflows" / "t.yml").write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: ./\n        with:\n          environment: default\n"
    )
    subprocess.run(["git", "init", "-q", str(repo)], check=True)  # actionlint looks for the project's git root
    proc = subprocess.run([tool("actionlint"), "-oneline"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and 'input "environment" is not defined' in proc.stdout, proc.stdout + proc.stderr
