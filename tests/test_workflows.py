"""The action and the workflows pass zizmor (nothing medium or above) and actionlint (clean;
it reads action.yml through the workflows' `uses: ./`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from harness import run_cli
from lock_index import action_lock, offline_env, serve_lock_index
from signing import Sigstore, github_env

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


# --- releases: .github/workflows/release.yml and the refs the docs name ------------------------

RELEASE = REPO / ".github" / "workflows" / "release.yml"


def version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def block(text: str, header: str) -> str:
    """The lines of a YAML mapping entry or list item starting at the line ``header`` (stripped),
    up to the next line indented as much or less: enough to read our own workflows without a
    YAML library."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == header)
    indent = len(lines[start]) - len(lines[start].lstrip(" "))
    out = [lines[start]]
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
            break
        out.append(line)
    return "\n".join(out) + "\n"


def step_script(text: str, name: str) -> str:
    """The ``run: |`` script of the step named ``name``."""
    step = block(text, f"- name: {name}")
    lines = step.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "run: |")
    return textwrap.dedent("\n".join(lines[start + 1 :])) + "\n"


def test_docs_name_only_refs_that_the_release_creates() -> None:
    # release.yml creates the tag vX.Y.Z (pushed, = pyproject's version) and moves vX.
    major = f"v{version().split('.')[0]}"
    created = {major, f"v{version()}"}
    tag_filter = re.search(r'tags: \["([^"]+)"\]', RELEASE.read_text())
    assert tag_filter and re.fullmatch(tag_filter.group(1).replace(".", r"\."), f"v{version()}")
    found: list[tuple[str, str]] = []
    for doc in [REPO / "README.md", REPO / "gitlab" / "README.md", *sorted((REPO / ".github/workflows").glob("*.yml"))]:
        text, name = doc.read_text(), doc.relative_to(REPO).as_posix()
        found += [(name, ref) for ref in re.findall(r"pixi-pack-ci/pixi-pack-action(?:/[\w./-]+)?@([\w.]+)", text)]
        found += [
            (name, ref)
            for ref in re.findall(r"raw\.githubusercontent\.com/pixi-pack-ci/pixi-pack-action/([^/]+)/", text)
        ]
        found += [(name, ref) for ref in re.findall(r"#\s+ref: (\S+)", text)]
        found += [(name, "v" + ref) for ref in re.findall(r"component: \S+/pixi-pack@(\d\S*)", text)]
    found = [(name, ref) for name, ref in found if not ref.startswith("vX")]  # placeholders in comments
    names = [name for name, _ in found]
    assert {"README.md", "gitlab/README.md", ".github/workflows/pack-slsa3.yml"} <= set(names)
    assert names.count("README.md") >= 5 and names.count("gitlab/README.md") >= 3
    assert {(name, ref) for name, ref in found if ref not in created} == set()
    # The reusable workflow runs the action of its own release, never a moving tag.
    slsa = (REPO / ".github/workflows/pack-slsa3.yml").read_text()
    assert re.findall(r"uses: pixi-pack-ci/pixi-pack-action@(\S+)", slsa) == [f"v{version()}"]


def fake_gh(tmp_path: Path, major_exists: bool) -> tuple[Path, Path]:
    """A stand-in for the gh CLI, which talks to GitHub's API (that cannot run here): it records its
    arguments and answers whether the major tag exists."""
    log = tmp_path / "gh.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{log}"\n'
        'case "$*" in "api repos/"*"/git/ref/tags/"*) '
        f"exit {0 if major_exists else 1};; esac\n"
    )
    gh.chmod(0o755)
    return bin_dir, log


@pytest.mark.parametrize("major_exists", [True, False])
def test_the_release_publishes_the_tag_and_moves_the_major_tag(tmp_path: Path, major_exists: bool) -> None:
    script = step_script(RELEASE.read_text(), "Publish the release and move the major tag")
    bin_dir, log = fake_gh(tmp_path, major_exists)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_REF_NAME": "v1.4.2",
        "GITHUB_REPOSITORY": "acme/pixi-pack-action",
        "GITHUB_SHA": "c" * 40,
    }
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == (
        "release create v1.4.2 --repo acme/pixi-pack-action --verify-tag --generate-notes dist/* provenance/*"
    )
    assert calls[1] == "api repos/acme/pixi-pack-action/git/ref/tags/v1"
    if major_exists:
        assert calls[2:] == [
            f"api -X PATCH repos/acme/pixi-pack-action/git/refs/tags/v1 -f sha={'c' * 40} -F force=true"
        ]
    else:
        assert calls[2:] == [f"api -X POST repos/acme/pixi-pack-action/git/refs -f ref=refs/tags/v1 -f sha={'c' * 40}"]


def test_the_release_tag_must_be_the_package_version(tmp_path: Path) -> None:
    script = step_script(RELEASE.read_text(), "The tag is the package's version")
    for tag, code in ((f"v{version()}", 0), ("v99.0.0", 1)):
        proc = subprocess.run(
            ["bash", "-c", script], cwd=REPO, env={**os.environ, "GITHUB_REF_NAME": tag}, capture_output=True, text=True
        )
        assert proc.returncode == code, proc.stdout + proc.stderr
    assert f"::error::tag v99.0.0 != v{version()}" in proc.stdout


def test_the_release_publishes_to_pypi_by_trusted_publishing_with_attestations() -> None:
    # PyPI cannot be published to from here: what runs there is the pinned action with these inputs.
    text = RELEASE.read_text()
    job = block(text, "pypi:")
    assert "environment:\n      name: pypi\n" in job
    assert re.search(r"permissions:\n      id-token: write # trusted publishing", job)
    assert "uses: pypa/gh-action-pypi-publish@ed0c53931b1dc9bd32cbe73a98c7f6766f8a527e # v1.13.0" in job
    assert "attestations: true" in job and "password" not in job and "secrets." not in text
    assert re.search(r"needs: \[build\]", job) and re.search(r"needs: \[pypi\]", block(text, "release:"))


def test_the_release_builds_signs_and_checks_its_own_files(tmp_path: Path, sigstore: Sigstore) -> None:
    text = RELEASE.read_text()
    build = block(text, "- name: Build the sdist and wheel with the hash-pinned build backend")
    assert "run: python3 plugins/pixi_pack_ci/plugins/github/install.py build dist\n" in build
    index = serve_lock_index(tmp_path / "index")
    try:
        built = subprocess.run(
            [sys.executable, "plugins/pixi_pack_ci/plugins/github/install.py", "build", str(tmp_path / "dist")],
            cwd=REPO, env=offline_env(index, tmp_path), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
        assert index.outside_the_lock() == [] and not set(index.decoys) & set(index.files_served())
    finally:
        index.stop()
    dist = tmp_path / "dist"
    wheel, sdist = dist / f"pixi_pack_ci-{version()}-py3-none-any.whl", dist / f"pixi_pack_ci-{version()}.tar.gz"
    assert sorted(p for p in dist.iterdir() if not p.name.startswith(".")) == [wheel, sdist]  # uv adds .gitignore

    # --check-release: the wheel must be the one the template of this release pins.
    lock = action_lock()
    root = tmp_path / "root"
    (root / "gitlab").mkdir(parents=True)
    template = (REPO / "gitlab" / "pixi-pack.yml").read_text()
    lock_text = (REPO / "requirements" / "action.txt").read_text()
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    for pinned, problems in ((digest, []), ("f" * 64, [f"{wheel.name} has sha256 {digest}"])):
        (root / "gitlab" / "pixi-pack.yml").write_text(lock.stamped_template(template, lock_text, version(), pinned))
        found = lock.check_release(root, dist)
        assert [p[: len(problems[0])] for p in found] == problems if problems else found == []

    # Our provenance on both files: the release job's own script, signed as its workflow on the tag.
    workspace = tmp_path / "ws"
    shutil.copytree(dist, workspace / "dist")
    (workspace / "requirements").mkdir()
    shutil.copy(REPO / "requirements" / "build.txt", workspace / "requirements" / "build.txt")
    # The venv the install step made (that step is install.py install, tested in test_github_action),
    # with one change: production Sigstore cannot be reached from here, so the loopback one signs.
    runner_temp = tmp_path / "runner"
    cli = runner_temp / "release-venv" / "bin" / "pixi-pack-ci"
    cli.parent.mkdir(parents=True)
    real_cli = Path(sys.executable).parent / "pixi-pack-ci"
    cli.write_text(f'#!/bin/sh\nexec "{real_cli}" "$@" --sigstore-trust-config "{sigstore.trust_config}"\n')
    cli.chmod(0o755)
    env = {**os.environ, **github_env(sigstore, ref=f"refs/tags/v{version()}"), "RUNNER_TEMP": str(runner_temp)}
    script = step_script(text, "Sign the release's files with our provenance")
    signed = subprocess.run(["bash", "-c", script], cwd=workspace, env=env, capture_output=True, text=True)
    assert signed.returncode == 0, signed.stdout + signed.stderr
    # PyPI gets exactly the two files; the bundles and SHA256SUMS go to the GitHub release.
    assert sorted(p.name for p in (workspace / "dist").iterdir() if p.name[0] != ".") == [wheel.name, sdist.name]
    provenance = workspace / "provenance"
    assert sorted(p.name for p in provenance.iterdir()) == sorted(
        ["SHA256SUMS", f"{wheel.name}.sigstore.json", f"{sdist.name}.sigstore.json"]
    )
    sums = subprocess.run(
        ["sha256sum", "-c", str(provenance / "SHA256SUMS")], cwd=workspace / "dist", capture_output=True
    )
    assert sums.returncode == 0 and sums.stdout.count(b": OK") == 2
    for file in (wheel, sdist):
        verified = run_cli(
            "verify", workspace / "dist" / file.name, "--bundle", provenance / f"{file.name}.sigstore.json",
            "--trusted-root", sigstore.trusted_root, "--repo", "acme/pixi-app",
            "--signer-workflow", "acme/pixi-app/.github/workflows/release.yml", "--json", check=True,
        )  # fmt: skip
        assert json.loads(verified.stdout)["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()


def test_the_action_caches_its_environment_under_the_lock_key_and_skips_the_install_on_a_hit() -> None:
    action = (REPO / "action.yml").read_text()
    assert "pip install" not in action
    restore = block(action, "- name: Restore pixi-pack-ci's environment")
    install = block(action, "- name: Install pixi-pack-ci from its lock")
    save = block(action, "- name: Save pixi-pack-ci's environment")
    pinned = "actions/cache/{}@0057852bfaa89a56745cba8c7296529d2fc39830 # v4.3.0"
    assert f"uses: {pinned.format('restore')}" in restore and f"uses: {pinned.format('save')}" in save
    for step in (restore, save):
        # the key install.py locate computes: lock and code digest, Python, runner OS and arch
        assert "key: ${{ steps.environment.outputs.key }}" in step and "restore-keys" not in step
        # never restored or saved for a job that signs
        assert "inputs.cache-environment == 'true' && inputs.attest != 'true'" in step
    assert "if: steps.environment-cache.outputs.cache-hit != 'true'" in install
    assert 'install.py" install' in install
    assert "inputs.cache-write == 'true'" in save and "steps.environment-cache.outputs.cache-hit != 'true'" in save
