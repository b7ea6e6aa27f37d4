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
from typing import Any

import pytest
from harness import DemoChannel, Project, run_cli
from image_support import TokenServer, busybox_base, docker_registry, need
from lock_index import action_lock, offline_env, serve_lock_index
from pixi_pack_ci.core import __version__
from signing import GITLAB_SAN, Sigstore, gitlab_env
from support import channel_records, write_lockfile

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


IMAGE_PIPELINE = """\
stages: [build, test]
include:
  - local: gitlab/pixi-pack.yml
    inputs:
      manifest-path: project
      lockfile: project/pixi.lock
      environments: [default, prod]
      platforms: [linux-64, win-64]
      version: preinstalled
      collect: false
      attest: true
      build-image: true
      image-base: BASE
      image-args: --env 'GREETING=hi; touch pwned' --label "org.example.team=data"
check-image:
  stage: test
  needs: [pixi-pack-image]
  script:
    - echo "image dotenv default=$PIXI_PACK_IMAGE_REF_DEFAULT prod=$PIXI_PACK_IMAGE_REF_PROD"
"""


class GitLabTokenServer(TokenServer):
    """The token service as GitLab's ``JwtController`` reads a request: every ``scope`` parameter
    split on whitespace (``scopes.flat_map(&:split)``), so one holding the space-delimited scopes
    of a cross-repository mount's challenge counts as several."""

    def token(self, query: dict[str, list[str]], good: bool) -> str:
        scopes = [part for value in query.get("scope", []) for part in value.split()]
        return super().token({**query, "scope": scopes}, good)


def image_project(tmp_path: Path, channel: DemoChannel) -> tuple[Project, set[str]]:
    """Two environments on linux-64 and win-64 (the demo project's prod has no win-64), and the
    linux-64 packages only the default environment has."""
    records = channel_records(channel.path, channel.url)
    noarch = records.get("noarch", [])
    wanted = ("hello-tool", "libgreet", "noarch-data")
    envs = {
        "default": {"linux-64": records["linux-64"] + noarch, "win-64": records["win-64"] + noarch},
        "prod": {p: [r for r in records[p] + noarch if r.name.normalized in wanted] for p in ("linux-64", "win-64")},
    }
    folder = tmp_path / "image-project"
    folder.mkdir()
    (folder / "pixi.toml").write_text('[workspace]\nname = "demo"\nchannels = []\nplatforms = []\n')
    lock = write_lockfile(folder / "pixi.lock", envs, channel.url)
    only_default = {r.file_name for r in records["linux-64"] if r.name.normalized not in wanted}
    return Project(folder, lock, channel, []), only_default


def skopeo(*args: str) -> Any:
    proc = subprocess.run(["/usr/bin/skopeo", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.lstrip().startswith(("{", "[")) else proc.stdout


def test_image_job_builds_pushes_and_reports(channel: DemoChannel, tmp_path: Path, sigstore: Sigstore) -> None:
    """build-image: one image job per environment, each one image of the Linux platforms (win-64
    is packed, not imaged), pushed to the default $CI_REGISTRY_IMAGE/{environment}:$CI_COMMIT_SHORT_SHA
    with the job's CI_REGISTRY_USER/PASSWORD through a token service, signed, built from the linux-64
    pack job's download cache; the dotenv report's digest is the registry's; the archive artifact
    reads as OCI and Docker archive; image-args are words, never shell."""
    need("docker-registry", "umoci", "busybox")
    user, password = "gitlab-ci-token", "job-token-s3cret"
    tokens = GitLabTokenServer(tmp_path / "tokens", user, password)
    base_layout = busybox_base(tmp_path / "base")
    try:
        with docker_registry(tmp_path / "registry", auth=tokens.auth_section()) as registry:
            creds = f"--creds={user}:{password}"
            base = f"{registry.host}/library/busybox:1"
            skopeo("copy", "--dest-tls-verify=false", f"--dest-creds={user}:{password}", f"oci:{base_layout}:1",
                   f"docker://{base}")  # fmt: skip
            project, only_default = image_project(tmp_path, channel)
            repo = make_repo(tmp_path, project, IMAGE_PIPELINE.replace("BASE", base))
            image = f"{registry.host}/acme/pixi-app"
            proc = gitlab_ci_local(
                repo, "--force-shell-executor", "--shell-isolation",
                "--variable", "GITLAB_CI=true", "--ignore-predefined-vars", "GITLAB_CI",
                "--variable", f"SIGSTORE_ID_TOKEN={gitlab_env()['SIGSTORE_ID_TOKEN']}",
                "--variable", f"PIXI_PACK_CI_SIGSTORE_TRUST_CONFIG={sigstore.trust_config}",
                "--variable", f"CI_REGISTRY={registry.host}", "--variable", f"CI_REGISTRY_IMAGE={image}",
                "--variable", f"CI_REGISTRY_USER={user}", "--variable", f"CI_REGISTRY_PASSWORD={password}",
                "--variable", f"DOCKER_CONFIG={tmp_path / 'no-docker-config'}",
            )  # fmt: skip
            log = proc.stdout + proc.stderr
            assert proc.returncode == 0, log[-6000:]
            for job in ("pixi-pack-image: [default]", "pixi-pack-image: [prod]", "check-image"):
                assert any(line.strip().startswith(f"PASS  {job}") for line in log.splitlines()), job
            commands = [line for line in log.splitlines() if "> $ pixi-pack-ci image " in line]
            assert len(commands) == 2 and all(" -p linux-64 " in c and "win-64" not in c for c in commands), commands
            # The same cache as the linux-64 pack jobs: default's own packages were downloaded once.
            assert log.count("imported cache '0_pixi-pack-linux-64-") == 2
            downloads = {f: channel.server.requests[f"/linux-64/{f}"] for f in only_default}
            assert downloads == dict.fromkeys(only_default, 1)

            (echoed,) = [line for line in log.splitlines() if "> image dotenv " in line]
            refs = dict(item.split("=", 1) for item in echoed.split("> image dotenv ", 1)[1].split())
            short_sha = subprocess.run(["git", "rev-parse", "--short=8", "HEAD"], cwd=repo, capture_output=True,
                                       text=True, check=True).stdout.strip()  # fmt: skip
            for environment in ("default", "prod"):
                name, _, digest = refs[environment].partition("@")
                assert name == f"{image}/{environment}" and digest.startswith("sha256:")
                tags = skopeo("list-tags", "--tls-verify=false", creds, f"docker://{name}")["Tags"]
                assert sorted(tags) == sorted([short_sha, digest.replace(":", "-")])  # the tag and the signature
                inspected = skopeo("inspect", "--tls-verify=false", creds, f"docker://{name}:{short_sha}")
                assert inspected["Digest"] == digest and inspected["Architecture"] == "amd64"
                assert inspected["Labels"] == {"org.example.team": "data"}
                assert "GREETING=hi; touch pwned" in inspected["Env"]
                manifest = skopeo("inspect", "--raw", "--tls-verify=false", creds, f"docker://{name}@{digest}")
                assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"  # win-64: no index
                assert manifest["annotations"]["org.opencontainers.image.base.name"] == base

                archive = repo / "pixi-packs" / f"{environment}-image.tar"
                assert skopeo("inspect", f"oci-archive:{archive}")["Digest"] == digest
                # Named after the first tag: what docker load (RepoTags) gives the image.
                assert skopeo("list-tags", f"docker-archive:{archive}")["Tags"] == [f"{name}:{short_sha}"]
                config = skopeo("inspect", "--config", f"docker-archive:{archive}")
                assert "GREETING=hi; touch pwned" in config["config"]["Env"]
                bundle = json.loads(archive.with_name(archive.name + ".sigstore.json").read_text())
                statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
                assert statement["subject"][0]["digest"] == {"sha256": digest.split(":", 1)[1]}
                assert statement["predicate"]["buildDefinition"]["buildType"].endswith("#gitlab-ci-v1")
            assert not list(repo.rglob("pwned"))
    finally:
        tokens.stop()


def test_image_job_without_a_base_fails_in_one_line(project: Project, tmp_path: Path) -> None:
    """build-image without image-base: the job fails before any download, saying so in one line
    (there is no silent default base)."""
    pipeline = INSTALL_ONLY + "      version: preinstalled\n      build-image: true\n"
    repo = make_repo(tmp_path, project, pipeline)
    proc = gitlab_ci_local(repo, "--force-shell-executor", "--shell-isolation", "pixi-pack-image")
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "FAIL  pixi-pack-image: [default]" in log, log[-3000:]
    # The job's output: the installed version (before_script), then one line.
    output = [line.split(" > ", 1)[1] for line in log.splitlines() if line.startswith("pixi-pack-image: [default] > ")]
    assert output == [
        f"pixi-pack-ci {__version__}",
        "pixi-pack-ci: error: image-base is required with build-image: scratch, oci-layout:DIR[:TAG] or "
        "REGISTRY/REPO[:TAG] (there is no default base)",
    ], log[-3000:]


def image_job_env(**variables: str) -> dict[str, str]:
    """The image job's variables as the template sets them (arrays as gitlab-ci-local renders them)."""
    return {
        "PIXI_PACK_ENVIRONMENT": "default", "PIXI_PACK_ENVIRONMENTS": "default", "PIXI_PACK_PLATFORMS": "linux-64",
        "PIXI_PACK_MANIFEST": ".", "PIXI_PACK_OUTPUT_DIR": "pixi-packs", "PIXI_PACK_IMAGE_BASE": "scratch",
        "PIXI_PACK_IMAGE_TAGS": "registry.example/acme/app/{environment}:abc", "PIXI_PACK_IMAGE_PUSH": "true",
        **variables,
    }  # fmt: skip


def test_image_job_inputs_are_checked_in_one_line() -> None:
    from pixi_pack_ci.core import UsageError
    from pixi_pack_ci.plugins.gitlab.image import image_arguments

    def refused(**variables: str) -> str:
        with pytest.raises(UsageError) as caught:
            image_arguments(image_job_env(**variables))
        return str(caught.value)

    assert refused(PIXI_PACK_PLATFORMS="win-64,osx-arm64") == (
        "build-image needs a Linux platform in platforms, got win-64, osx-arm64"
    )
    several = refused(PIXI_PACK_ENVIRONMENTS='["default", "prod"]', PIXI_PACK_IMAGE_TAGS="r.example/app:1")
    assert several.startswith("image-tags: r.example/app:1 has no {environment}: with several environments")
    assert refused(PIXI_PACK_IMAGE_TAGS="").startswith("image-tags is empty")
    assert refused(PIXI_PACK_IMAGE_TAGS="/default:abc").startswith("image-tags: /default:abc has no registry")
    assert refused(PIXI_PACK_IMAGE_ARGS="--env 'unclosed").startswith("image-args: ")
    assert refused(PIXI_PACK_IMAGE_PUSH="yes") == "PIXI_PACK_IMAGE_PUSH must be true or false, got 'yes'"
    # No push: no tags needed; the first names the archive, so only it is checked, and the default
    # tags with the container registry off ($CI_REGISTRY_IMAGE empty) name nothing.
    argv = image_arguments(image_job_env(PIXI_PACK_IMAGE_PUSH="false", PIXI_PACK_IMAGE_TAGS=""))
    assert "--push" not in argv and "oci-archive:pixi-packs/default-image.tar" in argv
    argv = image_arguments(image_job_env(PIXI_PACK_IMAGE_PUSH="false", PIXI_PACK_IMAGE_TAGS="/{environment}:abc"))
    assert "--push" not in argv and "oci-archive:pixi-packs/default-image.tar" in argv
    argv = image_arguments(image_job_env(PIXI_PACK_IMAGE_PUSH="false", PIXI_PACK_ENVIRONMENTS="default,prod",
                                         PIXI_PACK_IMAGE_TAGS="r.example/app/{environment}:1,/bad"))  # fmt: skip
    assert "--push" not in argv and "oci-archive:pixi-packs/default-image.tar:r.example/app/default:1" in argv
    several = refused(PIXI_PACK_IMAGE_PUSH="false", PIXI_PACK_ENVIRONMENTS="default,prod",
                      PIXI_PACK_IMAGE_TAGS="r.example/app:1")  # fmt: skip
    assert several.startswith("image-tags: r.example/app:1 has no {environment}")
    # Pushing: the archive is named after the first tag too.
    argv = image_arguments(image_job_env(PIXI_PACK_IMAGE_TAGS="r.example/app/{environment}:1,r.example/b:2"))
    assert "oci-archive:pixi-packs/default-image.tar:r.example/app/default:1" in argv
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--push"] == ["r.example/app/default:1", "r.example/b:2"]


@pytest.mark.parametrize(
    "rendered",
    ['["linux-64", "win-64", "linux-aarch64"]', "[linux-64, win-64, linux-aarch64]", "linux-64,win-64,linux-aarch64",
     "linux-64 win-64\nlinux-aarch64"],
)  # fmt: skip
def test_image_job_reads_array_inputs_however_rendered(rendered: str) -> None:
    """GitLab renders an array inside a string as JSON, gitlab-ci-local with commas."""
    from pixi_pack_ci.plugins.gitlab.image import image_arguments

    argv = image_arguments(image_job_env(PIXI_PACK_PLATFORMS=rendered, PIXI_PACK_ENVIRONMENT="prod",
                                         PIXI_PACK_ENVIRONMENTS=rendered.replace("linux-64", "prod")))  # fmt: skip
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-p"] == ["linux-64", "linux-aarch64"]
    assert argv[argv.index("--push") + 1] == "registry.example/acme/app/prod:abc"
