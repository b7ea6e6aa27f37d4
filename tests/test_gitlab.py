"""The GitLab template, end to end with gitlab-ci-local (shell executor): a pipeline that includes
gitlab/pixi-pack.yml locally, packs a 2-platform matrix from a lockfile served on 127.0.0.1, signs
keyless through the loopback Sigstore, collects, and hands the dotenv report to a later job."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Project, run_cli
from lock_index import action_lock, offline_env, serve_lock_index
from pixi_pack_ci.core import __version__
from signing import GITLAB_SAN, Sigstore, gitlab_env

REPO = Path(__file__).resolve().parent.parent
GITLAB_CI_LOCAL = REPO / "tests" / "js" / "node_modules" / ".bin" / "gitlab-ci-local"

PIPELINE = """\
stages: [build, test]
include:
  - local: gitlab/pixi-pack.yml
    inputs:
      manifest-path: project
      lockfile: project/pixi.lock
      platforms: [linux-64, win-64]
      version: preinstalled
      attest: true
check:
  stage: test
  needs: [pixi-pack-collect, pixi-pack]
  script:
    - echo "dotenv says PIXI_PACK_PATH=$PIXI_PACK_PATH count=$PIXI_PACK_COUNT"
    - test -f pixi-packs/packs.json
"""


def gitlab_ci_local(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not GITLAB_CI_LOCAL.exists():
        pytest.fail("gitlab-ci-local is missing: scripts/test.sh installs it with npm ci in tests/js")
    if shutil.which("rsync") is None:
        pytest.fail("gitlab-ci-local needs rsync (Debian package rsync; scripts/test.sh installs it)")
    return subprocess.run(
        [str(GITLAB_CI_LOCAL), "--no-color", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})},
    )


def make_repo(tmp_path: Path, project: Project, pipeline: str, template: str | None = None) -> Path:
    """A git repository as gitlab-ci-local wants it: one commit and a gitlab.com origin."""
    repo = tmp_path / "repo"
    (repo / "gitlab").mkdir(parents=True)
    (repo / "gitlab" / "pixi-pack.yml").write_text(template or (REPO / "gitlab" / "pixi-pack.yml").read_text())
    (repo / "project").mkdir()
    for name in ("pixi.toml", "pixi.lock"):
        shutil.copy(project.dir / name, repo / "project" / name)
    (repo / ".gitlab-ci.yml").write_text(pipeline)
    (repo / ".gitignore").write_text(".gitlab-ci-local/\n")
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "pipeline"], cwd=repo, check=True)
    subprocess.run(["git", "remote", "add", "origin", "git@gitlab.com:acme/pixi-app.git"], cwd=repo, check=True)
    return repo


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pipeline_packs_signs_and_collects_a_matrix(project: Project, tmp_path: Path, sigstore: Sigstore) -> None:
    repo = make_repo(tmp_path, project, PIPELINE)
    token = gitlab_env()["SIGSTORE_ID_TOKEN"]
    proc = gitlab_ci_local(
        repo,
        "--force-shell-executor",
        "--shell-isolation",
        # gitlab-ci-local says GITLAB_CI=false on purpose; a GitLab runner says true.
        "--variable", "GITLAB_CI=true", "--ignore-predefined-vars", "GITLAB_CI",
        "--variable", f"SIGSTORE_ID_TOKEN={token}",
        "--variable", f"PIXI_PACK_CI_SIGSTORE_TRUST_CONFIG={sigstore.trust_config}",
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    for job in ("pixi-pack: [default,linux-64]", "pixi-pack: [default,win-64]", "pixi-pack-collect", "check"):
        assert any(line.strip().startswith(f"PASS  {job}") for line in log.splitlines()), job
    # Collapsible log sections: gitlab-ci-local reads the section markers and shows their names.
    assert "pixi_pack_plan_default_linux-64_started" in log and "pixi_pack_packs took" in log
    assert "  hello-tool=1.0=0  hello-tool-1.0-0.conda" in log
    assert "dotenv says PIXI_PACK_PATH=pixi-packs/default-" in log and "count=1" in log

    packs_dir = repo / "pixi-packs"
    tars = sorted(packs_dir.glob("*.tar"))
    assert [t.name for t in tars] == ["default-linux-64.tar", "default-win-64.tar"]
    merged = json.loads((packs_dir / "packs.json").read_text())
    assert sorted(p["path"] for p in merged["packs"]) == [t.name for t in tars]
    for pack in merged["packs"]:
        assert pack["sha256"] == sha256(packs_dir / pack["path"])
        assert pack["bundle"] == pack["path"] + ".sigstore.json"
    assert [j["name"] for j in merged["jobs"]] == ["pixi-pack: [default,linux-64]", "pixi-pack: [default,win-64]"]
    per_job = sorted(p.name for p in packs_dir.glob("packs-*.json"))
    assert per_job == ["packs-pixi-pack-default-linux-64.json", "packs-pixi-pack-default-win-64.json"]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=packs_dir, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 2

    # The cache was keyed on the lockfile and filled.
    caches = list((repo / ".gitlab-ci-local" / "cache").glob("*pixi-pack-linux-64-*"))
    assert caches and any(p.suffix == ".conda" or p.name.endswith(".tar.bz2") for p in caches[0].rglob("*"))

    # Each pack is signed by the pipeline's identity, with the GitLab predicate filled from CI variables.
    for tar in tars:
        bundle = tar.with_name(tar.name + ".sigstore.json")
        verified = run_cli(
            "verify", tar, "--trusted-root", sigstore.trusted_root, "--cert-identity", GITLAB_SAN,
            "--repo", "https://gitlab.com/acme/pixi-app", "--json", check=True,
        )  # fmt: skip
        assert json.loads(verified.stdout)["sha256"] == sha256(tar)
        statement = json.loads(base64.b64decode(json.loads(bundle.read_text())["dsseEnvelope"]["payload"]))
        build = statement["predicate"]["buildDefinition"]
        assert build["buildType"].endswith("#gitlab-ci-v1")
        assert build["externalParameters"]["source"] == "https://gitlab.com/acme/pixi-app"
        job = json.loads((packs_dir / f"packs-pixi-pack-default-{tar.stem.split('-', 1)[1]}.json").read_text())["job"]
        assert statement["predicate"]["runDetails"]["metadata"]["invocationId"] == job["url"]


def test_template_inputs_shape_the_jobs(project: Project, tmp_path: Path) -> None:
    pipeline = PIPELINE.replace("      attest: true\n", "      environments: [default, prod]\n      release: true\n")
    repo = make_repo(tmp_path, project, pipeline)

    def jobs(*variables: str) -> list[str]:
        args = [a for v in variables for a in ("--variable", v)]
        listed = gitlab_ci_local(repo, "--list-json", *args)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        return sorted(job["name"] for job in json.loads(listed.stdout) if job["when"] != "never")

    matrix = [f"pixi-pack: [{e},{p}]" for e in ("default", "prod") for p in ("linux-64", "win-64")]
    assert jobs() == sorted([*matrix, "check", "pixi-pack-collect"])
    assert jobs("CI_COMMIT_TAG=v1.0.0") == sorted([*matrix, "check", "pixi-pack-collect", "pixi-pack-release"])
    assert "pixi-pack: [default,linux-64]" not in jobs("PIXI_PACK_DISABLED=1")

    bad = make_repo(tmp_path / "bad", project, PIPELINE.replace("attest: true", 'attest: "maybe"'))
    listed = gitlab_ci_local(bad, "--list")
    assert listed.returncode != 0 and "attest" in listed.stdout + listed.stderr


def test_mirror_layout_works_as_a_cicd_component(project: Project, tmp_path: Path) -> None:
    repo = tmp_path / "mirror"
    made = subprocess.run(
        ["bash", str(REPO / "gitlab" / "make-component.sh"), str(repo)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    assert (repo / "templates" / "pixi-pack.yml").read_text() == (REPO / "gitlab" / "pixi-pack.yml").read_text()
    shutil.copytree(project.dir, repo / "project")
    (repo / ".gitlab-ci.yml").write_text(
        "include:\n"
        "  - component: $CI_SERVER_FQDN/$CI_PROJECT_PATH/pixi-pack@$CI_COMMIT_SHA\n"
        "    inputs:\n"
        "      manifest-path: project\n"
        "      lockfile: project/pixi.lock\n"
        "      platforms: [linux-64, osx-arm64]\n"
        "      version: preinstalled\n"
    )
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "component"], cwd=repo, check=True)
    subprocess.run(["git", "remote", "add", "origin", "git@gitlab.com:acme/pixi-pack-ci.git"], cwd=repo, check=True)
    proc = gitlab_ci_local(repo, "--force-shell-executor", "--shell-isolation")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert sorted(p.name for p in (repo / "pixi-packs").glob("*.tar")) == [
        "default-linux-64.tar",
        "default-osx-arm64.tar",
    ]


INSTALL_ONLY = """\
stages: [build]
include:
  - local: gitlab/pixi-pack.yml
    inputs:
      manifest-path: project
      lockfile: project/pixi.lock
"""


def test_the_template_installs_its_own_release_with_every_hash(project: Project, tmp_path: Path) -> None:
    # A release's template pins that release's wheel (scripts/action_lock.py --release). Here the
    # wheel is built from this checkout as release.yml builds it (install.py build: the locked
    # hatchling), and a copy of the template pins it the same way; the job installs from an index
    # on 127.0.0.1 holding only the lock, the wheel and decoys, with no other network.
    lock = action_lock()
    build_index = serve_lock_index(tmp_path / "build-index", decoys=False)
    try:
        built = subprocess.run(
            [sys.executable, str(REPO / "plugins/pixi_pack_ci/plugins/github/install.py"), "build",
             str(tmp_path / "dist")],
            env=offline_env(build_index, tmp_path / "build"), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        build_index.stop()
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("pixi_pack_ci-*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    template = lock.stamped_template(
        (REPO / "gitlab" / "pixi-pack.yml").read_text(), (REPO / "requirements" / "action.txt").read_text(),
        __version__, digest,
    )  # fmt: skip
    assert lock.template_release(template) == (__version__, digest)
    index = serve_lock_index(tmp_path / "index", extra=[wheel])
    offline = offline_env(index, tmp_path)
    names = ("PIP_INDEX_URL", "PIP_NO_CACHE_DIR", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY")
    variables = [arg for name in names for arg in ("--variable", f"{name}={offline[name]}")]
    env = {**{name: offline[name] for name in names}, "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull}

    def collect(directory: str, template: str, pipeline: str = INSTALL_ONLY) -> str:
        repo = make_repo(tmp_path / directory, project, pipeline, template)
        proc = gitlab_ci_local(repo, "--force-shell-executor", "--shell-isolation", *variables, "pixi-pack-collect",
                               env=env)  # fmt: skip
        return f"exit {proc.returncode}\n" + proc.stdout + proc.stderr

    try:
        log = collect("pinned", template)
        assert log.startswith("exit 0"), log[-4000:]
        assert f"pixi-pack-ci {__version__}" in log and "nothing to collect" in log
        assert index.outside_the_lock() == [], index.outside_the_lock()
        assert wheel.name in index.files_served() and not set(index.decoys) & set(index.files_served())

        # One hash changed in the block: pip refuses the wheel, and the job fails.
        mutated = template.replace(digest, digest[:-4] + "0000")
        assert mutated != template
        log = collect("mutated", mutated)
        assert not log.startswith("exit 0") and "DO NOT MATCH THE HASHES" in log, log[-4000:]

        # Another release: installed by version alone, and the job says so.
        log = collect("other", template, INSTALL_ONLY + '      version: "9.9.9"\n')
        assert "pixi-pack-ci 9.9.9 is not this template's release: installed by version, without hashes" in log
        assert not log.startswith("exit 0"), "9.9.9 is on no index here"
    finally:
        index.stop()
