"""slsa-github-generator: its real v2.1.0 output verified offline, and our side of that path.

* The real bundle and artifact (slsa-verifier's test data, not committed here: read from
  ``../shared/reference/slsa-generator-v2.1.0`` or ``$PIXI_PACK_CI_SLSA_GENERATOR_SAMPLE``, else
  fetched once from slsa-verifier's repository; sha256-pinned either way) are
  verified by cosign, sigstore-go-verification, gh and ``pixi-pack-ci verify --provenance-path``
  against the public-good trusted root that sigstore-python ships. slsa-verifier itself cannot
  run offline (it trusts only the live TUF root), so it is what a real release must show.
* The ``hashes`` that the action, and so ``pack-slsa3.yml``, hands the generator decode to
  text-mode sha256sum lines naming exactly the files the workflow uploads, for one pack and several.
* A generator-shaped bundle for several packs (generator_double, loopback Sigstore) is verified by
  ``pixi-pack-ci verify`` the way slsa-verifier users call it, and rejected when it should be.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import sigstore
from generator_double import GENERATOR, GENERATOR_REF, generator_statement, parse_subjects, sign_as_generator
from harness import Project, assert_clean_error, make_project, run_cli
from signing import COMMIT, GITHUB_ISSUER, Sigstore, no_ci
from verifier_tools import ROOT, debian_tool, run, venv_tool

ARTIFACT = "binary-linux-amd64-push-v14"
#: The sample's files, pinned: wherever they come from, these are the bytes the tests mean.
SAMPLE_SHA256 = {
    ARTIFACT: "376e7e01348585b6e6643bc6663146b9d525d9b41228bf180eaeb4d4a3706caa",
    f"{ARTIFACT}.intoto.jsonl": "100bb40dbaa5c15a908fd2380b4950460f4053710c43fcae47d5c8ce3084a899",
}
#: Where slsa-verifier keeps it; fetched only where neither local copy exists (a fresh CI runner).
SAMPLE_SOURCE = os.environ.get(
    "PIXI_PACK_CI_SLSA_GENERATOR_SAMPLE_URL",
    "https://raw.githubusercontent.com/slsa-framework/slsa-verifier/b53bd9415b59417e887faccb8204f2cd77b3f963"
    "/cli/slsa-verifier/testdata/gha_generic/v2.1.0",
)
GEN_SAN = f"https://github.com/{GENERATOR_REF}"
PUBLIC_GOOD_ROOT = (
    Path(sigstore.__file__).parent / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev" / "trusted_root.json"
)
PACK_WORKFLOW = ROOT / ".github" / "workflows" / "pack-slsa3.yml"


def run_all(commands: dict[str, list[str | Path]]) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """``pixi-pack-ci`` once per entry, concurrently: each is a process that mostly imports."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(commands, pool.map(lambda args: run_cli(*args), commands.values()), strict=True))


linux_only = pytest.mark.skipif(sys.platform != "linux", reason="cosign and sigstore-go come from Debian packages")


@dataclass(frozen=True)
class Sample:
    artifact: Path
    bundle: Path
    tampered: Path
    trusted_root: Path
    trusted_root_jsonl: Path


def _pinned(folder: Path) -> bool:
    return all(
        (folder / name).is_file() and hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
        for name, digest in SAMPLE_SHA256.items()
    )


def sample_folder() -> Path:
    """$PIXI_PACK_CI_SLSA_GENERATOR_SAMPLE, else ../shared/reference/slsa-generator-v2.1.0, else a
    copy downloaded once into the git-ignored .tools/ (the sample is test data of another project,
    so it is not committed here). Every file must match its pinned sha256."""
    candidates = [
        os.environ.get("PIXI_PACK_CI_SLSA_GENERATOR_SAMPLE"),
        ROOT.parent / "shared/reference/slsa-generator-v2.1.0",
    ]
    for candidate in filter(None, candidates):
        if _pinned(Path(candidate)):
            return Path(candidate)
    cache = ROOT / ".tools" / "slsa-generator-v2.1.0"
    if not _pinned(cache):
        cache.mkdir(parents=True, exist_ok=True)
        for name in SAMPLE_SHA256:
            try:
                with urllib.request.urlopen(f"{SAMPLE_SOURCE}/{name}", timeout=60) as response:
                    (cache / name).write_bytes(response.read())
            except OSError as exc:
                pytest.fail(f"the real slsa-github-generator output is not here and not at {SAMPLE_SOURCE}: {exc}")
        assert _pinned(cache), f"{SAMPLE_SOURCE} served other bytes than the pinned sample"
    return cache


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    folder = sample_folder()
    artifact, bundle = folder / ARTIFACT, folder / f"{ARTIFACT}.intoto.jsonl"
    assert PUBLIC_GOOD_ROOT.is_file(), f"sigstore-python no longer ships {PUBLIC_GOOD_ROOT}"
    base = tmp_path_factory.mktemp("generator-sample")
    tampered = base / ARTIFACT
    data = artifact.read_bytes()
    tampered.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    jsonl = base / "trusted_root.jsonl"  # gh reads one compact trusted root per line
    jsonl.write_text(json.dumps(json.loads(PUBLIC_GOOD_ROOT.read_text()), separators=(",", ":")) + "\n")
    return Sample(artifact, bundle, tampered, PUBLIC_GOOD_ROOT, jsonl)


def test_the_real_generator_output_has_the_shape_we_rely_on(sample: Sample) -> None:
    """What generator_double, the README and ``verify --provenance-path`` assume about it."""
    bundle = json.loads(sample.bundle.read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    (entry,) = bundle["verificationMaterial"]["tlogEntries"]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"} and int(entry["logIndex"]) > 0
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v0.1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v0.2"
    predicate = statement["predicate"]
    assert predicate["builder"]["id"] == GEN_SAN
    assert predicate["buildType"] == "https://github.com/slsa-framework/slsa-github-generator/generic@v1"
    config = predicate["invocation"]["configSource"]
    assert config["uri"] == "git+https://github.com/slsa-framework/example-package@refs/tags/v14"
    assert predicate["materials"] == [{"uri": config["uri"], "digest": config["digest"]}]
    # Subjects are matched by digest only: this one's name is not the file's.
    (subject,) = statement["subject"]
    assert subject["name"] != ARTIFACT
    assert subject["digest"]["sha256"] == hashlib.sha256(sample.artifact.read_bytes()).hexdigest()
    twin = generator_statement(statement["subject"], "slsa-framework/example-package", "refs/tags/v14", "x", "w")
    assert set(twin["predicate"]) == set(predicate) and set(twin) == set(statement)


def test_pixi_pack_ci_verify_reports_the_real_generator_output(sample: Sample) -> None:
    base = ["verify", sample.artifact, "--provenance-path", sample.bundle, "--trusted-root", sample.trusted_root]
    repo = ["--source-uri", "github.com/slsa-framework/example-package"]
    proc = run_cli(*base, *repo, "--source-tag", "v14", "--builder-id", GEN_SAN, "--json", check=True)
    report = json.loads(proc.stdout)
    assert report["builder_id"] == GEN_SAN
    assert report["source"] == {
        "repository": "https://github.com/slsa-framework/example-package",
        "ref": "refs/tags/v14",
        "commit": "4d329c75e7ec1725f7c9ce917a8799d408d06be3",
    }
    assert report["packs"] == [
        {
            "pack": str(sample.artifact),
            "sha256": report["packs"][0]["sha256"],
            "subject": "gha_generic-binary-linux-amd64-v14",
        }
    ]
    text = run_cli(*base, *repo, "--source-versioned-tag", "v14", check=True).stdout.decode()
    assert f"builder: {GEN_SAN}" in text
    assert "source: https://github.com/slsa-framework/example-package @ refs/tags/v14" in text
    assert f"✅ {ARTIFACT} (sha256 376e7e01" in text and "is subject 'gha_generic-binary-linux-amd64-v14'" in text

    wrong = {
        "acme/app": [*base, "--source-uri", "github.com/acme/app"],
        "expected tag v15": [*base, *repo, "--source-tag", "v15"],
        "expected branch main": [*base, *repo, "--source-branch", "main"],
        "expected --builder-id": [*base, *repo, "--builder-id", GEN_SAN.replace("v2.1.0", "v2.0.0")],
        "is not a subject": ["verify", sample.tampered, *base[2:], *repo],
    }
    for expected, proc in run_all(wrong).items():
        assert expected in assert_clean_error(proc, code=1), expected


@linux_only
def test_cosign_sigstore_go_and_gh_verify_the_real_generator_output(sample: Sample) -> None:
    def cosign(artifact: Path, repository: str) -> list[str]:
        return [
            debian_tool("cosign"), "verify-blob-attestation", "--bundle", str(sample.bundle),
            "--trusted-root", str(sample.trusted_root), "--certificate-identity", GEN_SAN,
            "--certificate-oidc-issuer", GITHUB_ISSUER, "--certificate-github-workflow-repository", repository,
            "--type", "slsaprovenance02", str(artifact),
        ]  # fmt: skip

    def sigstore_go(artifact: Path, san: str) -> list[str]:
        return [
            debian_tool("sigstore-go-verification"), "-trustedrootJSONpath", str(sample.trusted_root),
            "-expectedIssuer", GITHUB_ISSUER, "-expectedSAN", san, "-artifact", str(artifact), str(sample.bundle),
        ]  # fmt: skip

    def gh(artifact: Path, repository: str) -> list[str]:
        return [
            venv_tool("gh"), "attestation", "verify", str(artifact), "--bundle", str(sample.bundle),
            "--custom-trusted-root", str(sample.trusted_root_jsonl), "--repo", repository,
            "--predicate-type", "https://slsa.dev/provenance/v0.2", "--signer-workflow", GENERATOR,
        ]  # fmt: skip

    good, repo = sample.artifact, "slsa-framework/example-package"
    accepted = [cosign(good, repo), sigstore_go(good, GEN_SAN), gh(good, repo)]
    rejected = [
        cosign(sample.tampered, repo), cosign(good, "acme/app"),
        sigstore_go(sample.tampered, GEN_SAN), sigstore_go(good, GEN_SAN.replace("v2.1.0", "v2.0.0")),
        gh(sample.tampered, repo), gh(good, "acme/app"),
    ]  # fmt: skip
    for command in accepted:
        outcome = run(command)
        assert outcome.accepted, outcome.describe()
    for command in rejected:
        outcome = run(command)
        assert not outcome.accepted, outcome.describe()


# --- our side: the hashes that pack-slsa3.yml hands the generator ---------------------------------


def pack_step_inputs() -> dict[str, str]:
    """The ``with:`` of pack-slsa3.yml's ``id: pack`` step, as written (values unexpanded)."""
    lines = PACK_WORKFLOW.read_text().split("      - id: pack\n", 1)[1].splitlines()
    assert lines[0].strip().startswith("uses: pixi-pack-ci/pixi-pack-action@") and lines[1].strip() == "with:"
    inputs = {}
    for line in lines[2:]:
        if not line.startswith(" " * 10):
            break
        key, value = line.strip().split(": ", 1)
        inputs[key] = value
    return inputs


def parse_github_output(text: str) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIMITER`` blocks, as the runner reads $GITHUB_OUTPUT."""
    outputs, lines, i = {}, text.splitlines(), 0
    while i < len(lines):
        name, sep, value = lines[i].partition("<<")
        if sep and "=" not in name:
            end = lines.index(value, i + 1)
            outputs[name], i = "\n".join(lines[i + 1 : end]), end + 1
        else:
            name, _, value = lines[i].partition("=")
            outputs[name], i = value, i + 1
    return outputs


def uploaded_names(paths: list[str]) -> list[str]:
    """actions/upload-artifact: with several paths, the least common ancestor of them is the root of
    the artifact; one file is stored under its own name."""
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    return [os.path.relpath(p, root) for p in paths]


@dataclass(frozen=True)
class ActionRun:
    workspace: Path
    outputs: dict[str, str]
    packs: list[Path]


def run_pack_workflow_step(project: Project, workspace: Path, platforms: str) -> ActionRun:
    """The action's step as pack-slsa3.yml runs it: its ``with:`` expanded with the call's inputs."""
    call = {"manifest-path": str(project.dir), "environments": "default", "platforms": platforms}
    call["create-executable"] = "false"
    expanded = {}
    for key, value in pack_step_inputs().items():
        ref = re.fullmatch(r"\$\{\{ inputs\.([\w-]+) \}\}", value)
        expanded[key] = call[ref.group(1)] if ref else value
    workspace.mkdir(parents=True)
    output = workspace.parent / f"{workspace.name}.output"
    output.write_text("")
    env = {
        **os.environ, **no_ci(), "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": os.devnull, "GITHUB_ENV": os.devnull,
        **{f"INPUT_{k.upper()}": v for k, v in expanded.items()},
    }  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "pixi_pack_ci.plugins.github.action"],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    outputs = parse_github_output(output.read_text())
    return ActionRun(workspace, outputs, [workspace / p for p in outputs["pack-paths"].splitlines()])


def test_pack_slsa3_hands_the_generator_the_actions_hashes() -> None:
    text = PACK_WORKFLOW.read_text()
    assert "      hashes: ${{ steps.pack.outputs.hashes }}\n" in text  # job output ← the action's
    assert "      base64-subjects: ${{ needs.pack.outputs.hashes }}\n" in text  # → the generator
    assert "          path: ${{ steps.pack.outputs.pack-paths }}\n" in text  # what gets uploaded
    assert f"uses: {GENERATOR.split('/.github')[0]}/.github/workflows/generator_generic_slsa3.yml@v2.1.0" in text


@pytest.mark.parametrize("platforms", ["linux-64", "linux-64 win-64 osx-arm64"], ids=["one pack", "several packs"])
def test_hashes_are_text_mode_sha256sum_lines_naming_the_uploaded_files(
    project: Project, tmp_path: Path, platforms: str
) -> None:
    action = run_pack_workflow_step(project, tmp_path / "ws", platforms)
    hashes = action.outputs["hashes"]
    assert re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", hashes), "one line of standard base64 (base64 -w0)"
    lines = base64.b64decode(hashes).decode().splitlines()
    # Text mode: two spaces; binary mode (`sha256sum -b`) would write ` *name` and the generator
    # would name the subject "*name".
    assert all(re.fullmatch(r"[0-9a-f]{64}  [^*\s][^\n]*", line) for line in lines), lines
    names = uploaded_names(action.outputs["pack-paths"].splitlines())
    assert len(names) == len(platforms.split())
    subjects = parse_subjects(hashes)
    assert [s["name"] for s in subjects] == names
    assert [s["digest"]["sha256"] for s in subjects] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in action.packs
    ]
    check = subprocess.run(
        ["sha256sum", "--strict", "-c", "-"], input="\n".join(lines) + "\n", text=True,
        cwd=action.packs[0].parent, capture_output=True,
    )  # fmt: skip
    assert check.returncode == 0 and check.stdout.count(": OK") == len(names), check.stdout + check.stderr


# --- verify --provenance-path on a generator-shaped bundle for several packs ------------------------


@pytest.fixture(scope="module")
def several(
    tmp_path_factory: pytest.TempPathFactory, demo_channel: object, sigstore: Sigstore
) -> tuple[ActionRun, Path]:
    base = tmp_path_factory.mktemp("generator")
    project = make_project(base / "project", demo_channel)  # type: ignore[arg-type]
    action = run_pack_workflow_step(project, base / "ws", "linux-64 win-64 osx-arm64")
    statement = generator_statement(
        parse_subjects(action.outputs["hashes"]),
        "acme/app",
        "refs/tags/v1.2.0",
        COMMIT,
        ".github/workflows/release.yml",
    )
    provenance = sign_as_generator(
        sigstore, statement, base / "multiple.intoto.jsonl", repository="acme/app", ref="refs/tags/v1.2.0",
        commit=COMMIT, workflow=".github/workflows/release.yml",
    )  # fmt: skip
    return action, provenance


def test_verify_names_the_subject_each_pack_matched(several: tuple[ActionRun, Path], sigstore: Sigstore) -> None:
    action, provenance = several
    flags = [
        "--provenance-path",
        provenance,
        "--trusted-root",
        sigstore.trusted_root,
        "--source-uri",
        "github.com/acme/app",
    ]
    report = json.loads(run_cli("verify", *action.packs, *flags, "--source-tag", "v1.2.0", "--json", check=True).stdout)
    assert [(Path(p["pack"]), p["subject"]) for p in report["packs"]] == [(p, p.name) for p in action.packs]
    assert report["other_subjects"] == [] and report["builder_id"] == GEN_SAN
    assert report["source"] == {
        "repository": "https://github.com/acme/app",
        "ref": "refs/tags/v1.2.0",
        "commit": COMMIT,
    }

    two = run_cli("verify", *action.packs[:2], *flags, "--source-versioned-tag", "v1", check=True).stdout.decode()
    assert f"✅ {action.packs[1].name} (sha256 " in two and f"is subject '{action.packs[1].name}'" in two
    assert f"not checked (no file given): {action.packs[2].name}" in two

    tampered = action.workspace / "tampered" / action.packs[1].name
    tampered.parent.mkdir()
    tampered.write_bytes(action.packs[1].read_bytes() + b"\0")
    wrong = {
        "expected a tag of version v1.3": [*action.packs, *flags, "--source-versioned-tag", "v1.3"],
        "expected branch main": [*action.packs, *flags, "--source-branch", "main"],
        "expected https://github.com/acme/other": [*action.packs, *flags[:-1], "github.com/acme/other"],
        f"{tampered.name} (sha256": [action.packs[0], tampered, *flags],
    }
    for expected, proc in run_all({k: ["verify", *args] for k, args in wrong.items()}).items():
        assert expected in assert_clean_error(proc, code=1), expected


def test_verify_refuses_generator_bundles_from_the_wrong_signer(
    several: tuple[ActionRun, Path], sigstore: Sigstore, tmp_path: Path
) -> None:
    action, provenance = several
    statement = json.loads(base64.b64decode(json.loads(provenance.read_text())["dsseEnvelope"]["payload"]))
    flags = ["--trusted-root", sigstore.trusted_root, "--source-uri", "github.com/acme/app"]
    where = {
        "repository": "acme/app",
        "ref": "refs/tags/v1.2.0",
        "commit": COMMIT,
        "workflow": ".github/workflows/release.yml",
    }
    forged = {**statement, "predicate": {**statement["predicate"], "builder": {"id": GEN_SAN + "x"}}}
    signed = {
        # slsa-verifier accepts the generator only at a release tag, and only the generator.
        "refs/tags/vX.Y.Z": (statement, f"{GENERATOR}@refs/heads/main"),
        "the signer is https://github.com/acme/app/": (
            statement,
            "acme/app/.github/workflows/release.yml@refs/tags/v1.2.0",
        ),
        "names builder": (forged, GENERATOR_REF),  # the predicate must name the certificate's signer
    }
    refused: dict[str, list[str | Path]] = {}
    for n, (expected, (content, job_workflow_ref)) in enumerate(signed.items()):
        bundle = tmp_path / f"{n}.intoto.jsonl"
        sign_as_generator(sigstore, content, bundle, job_workflow_ref=job_workflow_ref, **where)
        refused[expected] = ["verify", action.packs[0], "--provenance-path", bundle, *flags]
    usage = {
        "needs --source-uri": ["--provenance-path", provenance],
        "do not apply to slsa-github-generator provenance": ["--provenance-path", provenance, *flags, "--repo", "a/b"],
        "several packs need --provenance-path": ["--bundle", provenance, "--repo", "acme/app"],
        "only apply to slsa-github-generator provenance": ["--source-tag", "v1", "--repo", "acme/app"],
    }
    commands = {k: ["verify", *(action.packs if "several" in k else action.packs[:1]), *a] for k, a in usage.items()}
    results = run_all({**refused, **commands})
    for expected in refused:
        assert expected in assert_clean_error(results[expected], code=1), expected
    for expected in commands:
        assert expected in assert_clean_error(results[expected], code=2), expected
