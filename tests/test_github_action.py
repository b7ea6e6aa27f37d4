"""The action's entry point and the GitHub plugin, run as the composite step runs them: INPUT_*
variables in, GITHUB_OUTPUT / GITHUB_STEP_SUMMARY / GITHUB_ENV files and workflow commands out."""

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
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness import Project, credentialed_project
from image_support import TokenServer, docker_registry, need
from lock_index import action_lock, locked_here, offline_env, project_of, serve_lock_index, wheelhouse
from pixi_pack_ci.core import __version__
from signing import SAN, Sigstore, assert_secret_hidden, github_env, no_ci


@dataclass
class StepRun:
    proc: subprocess.CompletedProcess[str]
    outputs: dict[str, str]
    summary: str
    cwd: Path

    @property
    def stderr(self) -> str:
        return self.proc.stderr


def parse_github_output(text: str) -> dict[str, str]:
    """The runner's reading of $GITHUB_OUTPUT: `name=value` lines and `name<<DELIM` heredocs."""
    outputs: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            outputs[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        else:
            name, value = line.split("=", 1)
            outputs[name] = value
            i += 1
    return outputs


def run_step(cwd: Path, inputs: dict[str, str], env: dict[str, str] | None = None, *args: str) -> StepRun:
    cwd.mkdir(parents=True, exist_ok=True)
    files = {
        name: cwd.parent / f"{cwd.name}.{name.lower()}"
        for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV")
    }
    for f in files.values():
        f.write_text("")
    full_env = {
        **os.environ,
        **no_ci(),
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(cwd),
        "PIXI_PACK_CI_DOWNLOAD_ATTEMPTS": "2",
        **{k: str(v) for k, v in files.items()},
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pixi_pack_ci.plugins.github.action", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )
    return StepRun(
        proc, parse_github_output(files["GITHUB_OUTPUT"].read_text()), files["GITHUB_STEP_SUMMARY"].read_text(), cwd
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_pack_sets_every_output_and_the_summary(project: Project, tmp_path: Path) -> None:
    step = run_step(tmp_path / "ws", {"manifest-path": str(project.dir), "platforms": "linux-64"})
    assert step.proc.returncode == 0, step.stderr
    out = step.outputs
    assert set(out) >= {"pack-paths", "pack-path", "packs-json", "hashes", "bundle-paths", "attestation-url"}
    assert out["pack-paths"] == out["pack-path"] == "pixi-packs/default-linux-64.tar"
    pack = step.cwd / out["pack-path"]
    (entry,) = json.loads(out["packs-json"])
    assert entry == {
        "environment": "default",
        "platform": "linux-64",
        "platform_name": "linux-64",
        "path": "pixi-packs/default-linux-64.tar",
        "sha256": sha256(pack),
        "size": pack.stat().st_size,
        "packages": len(project.linux_packages),
    }
    assert base64.b64decode(out["hashes"]).decode() == f"{sha256(pack)}  default-linux-64.tar\n"
    assert out["bundle-paths"] == "" and out["attestation-url"] == ""
    assert "| pack | environment | platform | size | sha256 | packages |" in step.summary
    assert "| `pixi-packs/default-linux-64.tar` | default | linux-64 | 55." in step.summary
    assert f"`{sha256(pack)}` | {len(project.linux_packages)} |" in step.summary
    assert "::group ::pixi-pack-ci pack" in step.proc.stdout and "::endgroup::" in step.proc.stdout


def test_several_packs_and_their_hashes(project: Project, tmp_path: Path) -> None:
    inputs = {
        "manifest-path": str(project.dir / "pixi.toml"),
        "environments": "default\nprod",
        "platforms": "linux-64 win-64",
        "output-dir": "out",
        "job-summary": "false",
    }
    # prod has no win-64: the run fails with an annotation and writes no outputs.
    failed = run_step(tmp_path / "bad", inputs)
    assert failed.proc.returncode == 2 and failed.outputs == {}
    # The lockfile is outside the workspace, so the annotation names it by absolute path.
    assert f"::error title=pixi-pack-ci pack,file={project.lockfile}," in failed.stderr
    assert "not found for environment 'prod'" in failed.stderr

    inputs["environments"] = "default"
    inputs["platforms"] = "linux-64\nwin-64\nosx-arm64"
    step = run_step(tmp_path / "ws", inputs)
    assert step.proc.returncode == 0, step.stderr
    paths = step.outputs["pack-paths"].splitlines()
    assert paths == [f"out/default-{p}.tar" for p in ("linux-64", "win-64", "osx-arm64")]
    packs = json.loads(step.outputs["packs-json"])
    assert [p["path"] for p in packs] == paths and all(p["sha256"] == sha256(step.cwd / p["path"]) for p in packs)
    lines = base64.b64decode(step.outputs["hashes"]).decode().splitlines()
    assert lines == [f"{sha256(step.cwd / p)}  {Path(p).name}" for p in paths]
    assert step.summary == "", "job-summary: false writes no summary"
    # The runner's own check: sha256sum -c against the decoded hashes, from the packs' folder.
    check = subprocess.run(
        ["sha256sum", "-c", "-"], input="\n".join(lines) + "\n", text=True, cwd=step.cwd / "out", capture_output=True
    )
    assert check.returncode == 0 and check.stdout.count(": OK") == 3


def test_errors_become_annotations_on_the_lockfile(project: Project, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    local = ws / "proj"
    local.mkdir(parents=True)
    (local / "pixi.toml").write_text(project.dir.joinpath("pixi.toml").read_text())
    (local / "pixi.lock").write_text(project.lockfile.read_text())
    step = run_step(ws, {"manifest-path": "proj", "environments": "missing"})
    assert step.proc.returncode == 2 and step.outputs == {}
    (annotation,) = [line for line in step.stderr.splitlines() if line.startswith("::error")]
    line_no = 1 + project.lockfile.read_text().splitlines().index("environments:")
    assert annotation.startswith(f"::error title=pixi-pack-ci pack,file=proj/pixi.lock,line={line_no}::")
    assert "environment 'missing' not found" in annotation

    broken = ws / "broken"
    broken.mkdir()
    (broken / "pixi.lock").write_text("version: 6\nenvironments:\n  default:\n    channels: [\n  bad: : :\n")
    step = run_step(ws, {"manifest-path": "broken"})
    assert step.proc.returncode == 1
    assert "::error title=pixi-pack-ci pack,file=broken/pixi.lock,line=5::" in step.stderr


def test_bad_inputs_fail_with_one_clear_error(project: Project, tmp_path: Path) -> None:
    for inputs, message in [
        ({"create-executable": "yes please"}, "input create-executable must be true or false"),
        ({"log-level": "loud"}, "input log-level must be one of"),
        ({"inject": "nothing-*.conda"}, "matches no file"),
    ]:
        step = run_step(tmp_path / "ws", {"manifest-path": str(project.dir), **inputs})
        assert step.proc.returncode == 2, step.stderr
        assert message in step.stderr and "::error title=pixi-pack-ci::" in step.proc.stdout
        assert "Traceback" not in step.stderr and step.outputs == {}


def test_build_image_pushes_every_environment_from_the_packs_downloads(project: Project, tmp_path: Path) -> None:
    """build-image: after the packs, one image per environment pushed to a registry behind a token
    service (Debian's docker-registry on 127.0.0.1), with the credentials docker/login-action would
    write; no package is downloaded twice; outputs name every pushed image."""
    need("skopeo")
    tokens = TokenServer(tmp_path / "tokens", "ci-user", "s3cret-pass")
    try:
        with docker_registry(tmp_path / "registry", auth=tokens.auth_section()) as registry:
            docker = tmp_path / "docker"
            docker.mkdir()
            auth = base64.b64encode(b"ci-user:s3cret-pass").decode()
            (docker / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
            before = sum(project.channel.server.requests.values())
            inputs = {
                "manifest-path": str(project.dir),
                "environments": "default prod",
                "platforms": "linux-64",
                "cache": "false",
                "build-image": "true",
                "image-base": "scratch",
                "image-tags": f"{registry.host}/acme/{{environment}}:v1",
                "image-args": "--env 'GREETING=hello there' --label org.example.built-by=action",
            }
            step = run_step(tmp_path / "ws", inputs, {"DOCKER_CONFIG": str(docker)})
            assert step.proc.returncode == 0, step.stderr
            # The image commands took the packages the pack had just fetched (a cache for the run).
            fetched = sum(project.channel.server.requests.values()) - before
            assert fetched == len(project.linux_packages), "each package is downloaded once"
            refs = step.outputs["image-refs"].splitlines()
            assert [r.split("@")[0] for r in refs] == [f"{registry.host}/acme/{e}" for e in ("default", "prod")]
            assert step.outputs["image-ref"] == refs[0]
            assert step.outputs["image-digest"] == refs[0].split("@")[1]
            assert len(step.outputs["pack-paths"].splitlines()) == 2, "the packs are still written"
            for ref in refs:
                name, digest = ref.split("@")
                creds = ["--tls-verify=false", "--creds", "ci-user:s3cret-pass"]
                raw = subprocess.run(["skopeo", "inspect", *creds, "--raw", f"docker://{name}:v1"],
                                     capture_output=True, check=True).stdout  # fmt: skip
                assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest, "the tag is the image the output names"
                config = json.loads(subprocess.run(["skopeo", "inspect", *creds, "--config", f"docker://{name}:v1"],
                                                   capture_output=True, check=True).stdout)  # fmt: skip
                assert "GREETING=hello there" in config["config"]["Env"]
                assert config["config"]["Labels"]["org.example.built-by"] == "action"
            assert (
                step.summary.count(f"{registry.host}/acme/") == 2 and "| image | digest | platforms |" in step.summary
            )
            assert step.proc.stdout.count("::group ::pixi-pack-ci image") == 2
    finally:
        tokens.stop()


def test_build_image_without_push_writes_an_archive(project: Project, tmp_path: Path) -> None:
    need("skopeo")
    inputs = {
        "manifest-path": str(project.dir),
        "platforms": "linux-64 osx-arm64",  # packed both; imaged only the Linux one
        "build-image": "true",
        "image-base": "scratch",
        "image-push": "false",
        "image-tags": "registry.invalid/never/{environment}:1 registry.invalid/second:2",
        "cache-dir": str(tmp_path / "cache"),
    }
    step = run_step(tmp_path / "ws", inputs)
    assert step.proc.returncode == 0, step.stderr
    archive = step.cwd / "pixi-packs" / "default-image.tar"
    assert step.outputs["image-ref"] == "" and step.outputs["image-digest"].startswith("sha256:")
    assert len(step.outputs["pack-paths"].splitlines()) == 2
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"docker-archive:{archive}"], capture_output=True, check=True)
    assert json.loads(raw.stdout)["config"]["digest"], "docker-archive (what docker load reads) takes the archive"
    oci = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], capture_output=True, check=True)
    assert "sha256:" + hashlib.sha256(oci.stdout).hexdigest() == step.outputs["image-digest"]
    # Named after the first tag, {environment} replaced: docker load gives it that name (RepoTags),
    # which skopeo's docker-archive transport finds it by.
    name = "registry.invalid/never/default:1"
    named = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}:{name}"], capture_output=True, text=True)
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["Name"] == "registry.invalid/never/default"
    tags = subprocess.run(["skopeo", "list-tags", f"docker-archive:{archive}"], capture_output=True, text=True)
    assert json.loads(tags.stdout)["Tags"] == [name]


def test_bad_image_inputs_fail_before_anything_is_written(project: Project, tmp_path: Path) -> None:
    image = {"manifest-path": str(project.dir), "build-image": "true", "image-base": "scratch"}
    for inputs, message in [
        ({**image, "image-base": ""}, "input image-base is required with build-image"),
        (image, "input image-tags is empty"),
        ({**image, "environments": "default prod", "image-tags": "r.example/app:1"}, "needs {environment}"),
        (  # not pushed, but the first tag names each environment's archive
            {**image, "image-push": "false", "environments": "default prod", "image-tags": "r.example/app:1"},
            "needs {environment}",
        ),
        ({**image, "image-push": "false", "platforms": "osx-arm64 win-64"}, "needs a Linux platform"),
        ({**image, "image-push": "false", "image-args": "--env 'unclosed"}, "input image-args: No closing quotation"),
        ({**image, "image-push": "maybe"}, "input image-push must be true or false"),
    ]:
        step = run_step(tmp_path / "ws", inputs)
        assert step.proc.returncode == 2, (inputs, step.stderr)
        assert message in step.stderr and "::error title=pixi-pack-ci::" in step.proc.stdout
        assert "Traceback" not in step.stderr and step.outputs == {}
        assert not (step.cwd / "pixi-packs").exists(), "no pack is written when an image input is wrong"


SECRET = "lock-url-password-1234"
AUTH_SECRET = "bearer-from-auth-file-5678"


def test_credentials_are_masked_and_never_printed(project: Project, tmp_path: Path) -> None:
    lock_dir = credentialed_project(project, tmp_path / "p", "ci", SECRET)
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"unused.example": {"BearerToken": AUTH_SECRET}}))
    step = run_step(
        tmp_path / "ws",
        {"manifest-path": str(lock_dir), "platforms": "linux-64", "auth-file": str(auth), "log-level": "debug"},
    )
    assert step.proc.returncode == 0, step.stderr
    everything = step.proc.stdout + step.stderr + step.summary + json.dumps(step.outputs)
    for secret in (SECRET, AUTH_SECRET):
        assert f"::add-mask::{secret}" in step.stderr, f"{secret} was not masked"
        assert_secret_hidden(everything, secret)


def test_attest_adds_bundles_and_links(project: Project, tmp_path: Path, sigstore: Sigstore) -> None:
    env = github_env(sigstore)
    step = run_step(
        tmp_path / "ws",
        {
            "manifest-path": str(project.dir),
            "platforms": "linux-64",
            "attest": "true",
            "sigstore-trust-config": str(sigstore.trust_config),
        },
        env,
    )
    assert step.proc.returncode == 0, step.stderr
    assert step.outputs["bundle-paths"] == "pixi-packs/default-linux-64.tar.sigstore.json"
    assert (step.cwd / step.outputs["bundle-paths"]).is_file()
    url = step.outputs["attestation-url"]
    assert re.fullmatch(r"https://github\.com/acme/pixi-app/attestations/\d+", url)
    assert f"🔏 Signed keyless (Sigstore) by `{SAN}`" in step.summary
    assert (
        f"[{url}]({url})" in step.summary
        and "gh attestation verify default-linux-64.tar --repo acme/pixi-app" in step.summary
    )


def test_cache_key_follows_the_lockfile_and_the_platforms(project: Project, tmp_path: Path) -> None:
    def key(**inputs: str) -> dict[str, str]:
        step = run_step(
            tmp_path / "ws", {"manifest-path": str(project.dir), **inputs}, {"RUNNER_OS": "Linux"}, "cache-key"
        )
        assert step.proc.returncode == 0, step.stderr
        return step.outputs

    first = key(platforms="linux-64")
    assert first["key"].startswith(first["restore-prefix"]) and first["restore-prefix"].startswith(
        "pixi-pack-ci-v1-Linux-"
    )
    assert hashlib.sha256(project.lockfile.read_bytes()).hexdigest()[:20] in first["key"]
    assert key(platforms="linux-64") == first
    assert key(platforms="linux-64 win-64")["key"] != first["key"]
    project.lockfile.write_text(project.lockfile.read_text() + "\n")
    assert key(platforms="linux-64")["key"] != first["key"]


def test_platform_names_of_a_v7_lockfile(project: Project, tmp_path: Path) -> None:
    # A v7 lockfile may name a platform apart from its subdir; the action passes names through.
    from support import channel_records, write_pixi_lock

    records = channel_records(project.channel.path, project.channel.url)
    linux = records["linux-64"] + records["noarch"]
    named = tmp_path / "named"
    write_pixi_lock(
        named / "pixi.lock", 7, project.channel.url, {"linux-64": linux, "linux-64-cuda": linux[:2]},
        platform_subdirs={"linux-64-cuda": "linux-64"},
    )  # fmt: skip
    step = run_step(tmp_path / "ws", {"manifest-path": str(named), "platforms": "linux-64 linux-64-cuda"})
    assert step.proc.returncode == 0, step.stderr
    packs = json.loads(step.outputs["packs-json"])
    assert [(p["platform_name"], p["platform"], p["path"]) for p in packs] == [
        ("linux-64", "linux-64", "pixi-packs/default-linux-64.tar"),
        ("linux-64-cuda", "linux-64", "pixi-packs/default-linux-64-cuda.tar"),
    ]
    assert "| linux-64-cuda |" in step.summary


# --- the action's own environment (plugins/pixi_pack_ci/plugins/github/install.py) ---------------

INSTALLER = Path("plugins/pixi_pack_ci/plugins/github/install.py")


def action_tree(directory: Path) -> Path:
    """A copy of what the action's checkout holds that the installer reads."""
    repo = Path(__file__).resolve().parent.parent
    directory.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", ".gitignore"):
        shutil.copy(repo / name, directory / name)
    for name in ("requirements", "core", "plugins", "hatch_plugin"):
        shutil.copytree(repo / name, directory / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return directory


def installer(tree: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(tree / INSTALLER), *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_the_action_installs_its_lock_and_nothing_else(tmp_path: Path) -> None:
    tree = action_tree(tmp_path / "action")
    index = serve_lock_index(tmp_path / "index")
    try:
        env = {**offline_env(index, tmp_path), "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64"}
        venv = tmp_path / "venv"
        located = installer(tree, env, "locate", "--venv", str(venv))
        assert located.returncode == 0, located.stderr
        outputs = dict(line.split("=", 1) for line in located.stdout.splitlines())
        assert outputs["key"].startswith(f"pixi-pack-ci-env-v1-Linux-X64-py{platform.python_version()}-")
        assert outputs["cli"] == str(venv / "bin" / "pixi-pack-ci")

        cold = installer(tree, env, "install", "--venv", str(venv))
        assert cold.returncode == 0, cold.stdout[-3000:] + cold.stderr[-3000:]
        assert "installed=true" in cold.stdout
        assert index.outside_the_lock() == [], "asked for something the lock does not pin"
        assert not set(index.decoys) & set(index.files_served())
        # Every runtime package came from the index, the build backend too: nothing from elsewhere.
        served = {project_of(name) for name in index.files_served()}
        assert served == locked_here(), served ^ locked_here()
        version = subprocess.run([outputs["cli"], "--version"], capture_output=True, text=True)
        assert version.returncode == 0 and version.stdout.strip() == f"pixi-pack-ci {__version__}"
        # Only what runs: the build backend built the wheel in its own environment and stayed there.
        python = outputs["python"]
        assert subprocess.run([python, "-c", "import hatchling"], capture_output=True).returncode != 0
        assert subprocess.run([python, "-c", "import sigstore, uv, rattler"], capture_output=True).returncode == 0

        # The same key again (as after a cache restore): nothing is installed or fetched.
        asked = len(index.requests)
        warm = installer(tree, env, "install", "--venv", str(venv))
        assert warm.returncode == 0 and "installed=false" in warm.stdout, warm.stderr
        assert f"environment {outputs['key']} restored, nothing to install" in warm.stdout
        assert len(index.requests) == asked
        # A venv someone else left there (no marker of this key) is replaced, not trusted.
        (venv / "pixi-pack-ci-environment.json").write_text('{"key": "another"}')
        again = installer(tree, env, "install", "--venv", str(venv))
        assert again.returncode == 0 and "installed=true" in again.stdout, again.stderr
        assert index.outside_the_lock() == []
        # The check above can fail: a resolver not held to the lock would fetch the decoy.
        urllib.request.urlopen(index.url.replace("/simple/", f"/files/{index.decoys[0]}")).read()
        assert index.outside_the_lock() == [f"GET /files/{index.decoys[0]}"]
    finally:
        index.stop()


def test_the_environment_key_follows_the_lock_the_code_the_os_and_the_arch(tmp_path: Path) -> None:
    tree = action_tree(tmp_path / "action")
    env = {**os.environ, "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64"}

    def key(**extra: str) -> str:
        proc = installer(tree, {**env, **extra}, "locate", "--venv", str(tmp_path / "venv"))
        assert proc.returncode == 0, proc.stderr
        return dict(line.split("=", 1) for line in proc.stdout.splitlines())["key"]

    first = key()
    assert first == key()
    assert key(RUNNER_OS="macOS").startswith("pixi-pack-ci-env-v1-macOS-X64-py")
    assert key(RUNNER_ARCH="ARM64").startswith("pixi-pack-ci-env-v1-Linux-ARM64-py")
    lock = tree / "requirements" / "action.txt"
    lock.write_text(lock.read_text() + "\n")
    assert key() != first
    lock.write_text(lock.read_text()[:-1])
    assert key() == first
    (tree / "core" / "pixi_pack_ci" / "core" / "cli.py").write_text("# changed\n", encoding="utf-8")
    assert key() != first


def mutate_hash(lock: Path, digest: str) -> None:
    text = lock.read_text()
    assert f"sha256:{digest}" in text, f"{digest} is not in {lock}"
    lock.write_text(text.replace(f"sha256:{digest}", f"sha256:{digest[:-4]}0000"))


def test_one_mutated_hash_in_the_lock_and_the_install_refuses(tmp_path: Path) -> None:
    index = serve_lock_index(tmp_path / "index", decoys=False)
    try:
        wheels = {project_of(p.name): p for p in wheelhouse().glob("*.whl")}
        for project in ("installer", "uv"):  # a runtime package uv installs; the uv wheel this file fetches
            tree = action_tree(tmp_path / project)
            mutate_hash(tree / "requirements" / "action.txt", hashlib.sha256(wheels[project].read_bytes()).hexdigest())
            env = offline_env(index, tmp_path / f"{project}-scratch")
            proc = installer(tree, env, "install", "--venv", str(tmp_path / f"{project}-venv"))
            assert proc.returncode == 1, proc.stdout[-2000:]
            output = proc.stdout + proc.stderr
            if project == "uv":
                assert "no uv 0." in output and "wheel with a locked hash" in output, output[-2000:]
            else:
                assert "Hash mismatch" in output and wheels[project].name.split("-")[0] in output, output[-2000:]
            assert not (tmp_path / f"{project}-venv" / "pixi-pack-ci-environment.json").exists()
    finally:
        index.stop()


# --- the lock itself (scripts/action_lock.py) ----------------------------------------------------


def test_only_what_runs_is_a_dependency_and_in_the_lock() -> None:
    repo = Path(__file__).resolve().parent.parent
    with open(repo / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    names = {re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0] for req in project["dependencies"]}
    assert "hatchling" not in names and project["optional-dependencies"]["hatch"] == ["hatchling>=1.26"]
    locked_runtime = action_lock().read_pins((repo / "requirements" / "action.txt").read_text())
    assert {project_of(n) for n in names} <= set(locked_runtime) and "hatchling" not in locked_runtime
    # What every start imports (so must be installed), and what it must not need.
    started = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pixi_pack_ci.core.cli", "--version"], capture_output=True, text=True
    )
    imported = {line.split("|")[-1].strip().split(".")[0] for line in started.stderr.splitlines() if "|" in line}
    assert {"cryptography", "github_action_utils", "rattler", "pluggy"} <= imported
    assert "hatchling" not in imported


def test_the_lock_check_compares_pins_and_keeps_hashes() -> None:
    compare = action_lock().compare
    locked_text = (
        "a==1.0 \\\n    --hash=sha256:"
        + "1" * 64
        + "\nb==2.0 ; sys_platform == 'win32' \\\n    --hash=sha256:"
        + "2" * 64
        + "\n"
    )
    assert compare(locked_text, locked_text) == []
    more_files = locked_text.replace("\nb==", " \\\n    --hash=sha256:" + "3" * 64 + "\nb==")
    assert compare(locked_text, more_files) == [], "a file added upstream is no reason to fail"
    assert compare(more_files, locked_text) == ["a 1.0: 1 locked file(s) no longer on the index"]
    assert compare(locked_text, locked_text.replace("a==1.0", "a==1.1")) == [
        "a==1.0 is locked, the inputs now give a==1.1"
    ]
    assert compare(locked_text, locked_text.replace("'win32'", "'darwin'")) == [
        "b==2.0 ; sys_platform == 'win32' is locked, the inputs now give b==2.0 ; sys_platform == 'darwin'"
    ]
    only_a = locked_text.split("b==")[0]
    assert compare(locked_text, only_a) == ["b is locked but no longer required"]
    assert compare(only_a, locked_text) == ["b==2.0 ; sys_platform == 'win32' is required but not locked"]


def test_the_lock_check_fails_when_pyproject_no_longer_matches(tmp_path: Path) -> None:
    # A real resolution (uv against the package index, as scripts/test.sh runs it) of a copy whose
    # pyproject.toml dropped a dependency that nothing else needs.
    repo = Path(__file__).resolve().parent.parent
    for name in ("pyproject.toml", "requirements/action.txt", "requirements/build.txt", "requirements/build.in",
                 "requirements/constraints.txt", "gitlab/pixi-pack.yml"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('    "github-action-utils>=2,<3",\n', ""))
    proc = subprocess.run(
        [sys.executable, str(repo / "scripts" / "action_lock.py"), "--check", "--root", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "requirements/action.txt: github-action-utils is locked but no longer required" in proc.stderr
    assert "regenerate with `python scripts/action_lock.py`" in proc.stderr
