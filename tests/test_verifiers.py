"""Every verifier by every case, for packs signed three ways: GitHub keyless, GitLab keyless, a key.

Verifiers: ``pixi-pack-ci verify``, the sigstore CLI (sigstore-python; ``verify identity`` and, for
the repository, ``verify github``), ``gh attestation verify``, sigstore-js (``@sigstore/verify``),
``cosign verify-blob-attestation`` 2.5.0 and ``sigstore-go-verification`` 0.7.1. All run offline
against the loopback Sigstore's trusted root; nothing is mocked.

Each bad case is the good command with exactly one thing changed (the pack, the identity, the
issuer, the repository or the key), and the good command itself must pass, so a rejection can only
come from that one change. A verifier that cannot express a case has no cell ("-"), and the reason
is in ``NOT_EXPRESSIBLE``. The table is printed.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from harness import make_project, pack_ok, run_cli
from signing import GITHUB_ISSUER, GITLAB_SAN, KEY_PASSWORD, SAN, Sigstore, github_env, gitlab_env, no_ci
from sigstore_double import FIRST_LOG_INDEX
from verifier_tools import Outcome, debian_tool, node_verifier, run, venv_tool

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="cosign and sigstore-go come from Debian packages")

CASES = ("good", "tampered pack", "wrong identity", "wrong issuer", "wrong repository", "wrong key")
MODES = ("GitHub keyless", "GitLab keyless", "key")


@dataclass(frozen=True)
class Params:
    """What one verification is asked: this pack, this bundle, from this signer."""

    pack: Path
    bundle: Path
    identity: str = ""
    issuer: str = ""
    repository: str = ""  # owner/repo on GitHub, the project URL on GitLab
    key: Path | None = None


@dataclass(frozen=True)
class Signed:
    good: Params
    tampered: Path
    other_key: Path | None
    trusted_root: Path
    trusted_root_jsonl: Path
    trust_config: Path


def bad(signed: Signed, case: str, mode: str) -> Params:
    """The good parameters with the one change that ``case`` names."""
    good = signed.good
    gitlab = mode == "GitLab keyless"
    return {
        "good": good,
        "tampered pack": replace(good, pack=signed.tampered),
        "wrong identity": replace(
            good,
            identity=GITLAB_SAN.replace("refs/heads/main", "refs/heads/other")
            if gitlab
            else SAN.replace("release.yml", "other.yml"),
        ),
        "wrong issuer": replace(good, issuer=GITHUB_ISSUER if gitlab else "https://gitlab.com"),
        "wrong repository": replace(
            good, repository="https://gitlab.com/acme/other-app" if gitlab else "acme/other-app"
        ),
        "wrong key": replace(good, key=signed.other_key),
    }[case]


# --- the verifiers: a command for the parameters, or None where the case cannot be expressed ------

Command = Callable[[Signed, Params, str], list[str] | None]


def ours(s: Signed, p: Params, mode: str) -> list[str]:
    base = [venv_tool("pixi-pack-ci"), "verify", str(p.pack), "--bundle", str(p.bundle)]
    if mode == "key":
        return [*base, "--key", str(p.key)]
    identity = ["--cert-identity", p.identity, "--cert-oidc-issuer", p.issuer, "--repo", p.repository]
    return [*base, "--trusted-root", str(s.trusted_root), *identity]


def sigstore_identity(s: Signed, p: Params, mode: str) -> list[str]:
    return [
        venv_tool("sigstore"), "--trust-config", str(s.trust_config), "verify", "identity", "--bundle",
        str(p.bundle), "--cert-identity", p.identity, "--cert-oidc-issuer", p.issuer, str(p.pack),
    ]  # fmt: skip


def sigstore_github(s: Signed, p: Params, mode: str) -> list[str]:
    return [
        venv_tool("sigstore"), "--trust-config", str(s.trust_config), "verify", "github", "--bundle",
        str(p.bundle), "--cert-identity", p.identity, "--repository", p.repository, str(p.pack),
    ]  # fmt: skip


def gh(s: Signed, p: Params, mode: str) -> list[str]:
    return [
        venv_tool("gh"), "attestation", "verify", str(p.pack), "--bundle", str(p.bundle),
        "--custom-trusted-root", str(s.trusted_root_jsonl), "--repo", p.repository,
        "--cert-identity", p.identity, "--cert-oidc-issuer", p.issuer,
    ]  # fmt: skip


def sigstore_js(s: Signed, p: Params, mode: str) -> list[str]:
    if mode == "key":
        return [*node_verifier(), "key", str(p.bundle), str(p.key), str(p.pack)]
    return [*node_verifier(), "keyless", str(p.bundle), str(s.trusted_root), p.identity, p.issuer, str(p.pack)]


def cosign(s: Signed, p: Params, mode: str) -> list[str]:
    base = [debian_tool("cosign"), "verify-blob-attestation", "--bundle", str(p.bundle)]
    # cosign < 3.0.4 goes to TUF without --trusted-root even for keys; --type is checked from 2.6.3/3.0.6.
    common = ["--trusted-root", str(s.trusted_root), "--type", "slsaprovenance1"]
    if mode == "key":
        return [*base, *common, "--key", str(p.key), "--insecure-ignore-tlog", str(p.pack)]
    identity = ["--certificate-identity", p.identity, "--certificate-oidc-issuer", p.issuer]
    if mode == "GitHub keyless":
        identity += ["--certificate-github-workflow-repository", p.repository]
    return [*base, *common, *identity, str(p.pack)]


def sigstore_go(s: Signed, p: Params, mode: str) -> list[str]:
    return [
        debian_tool("sigstore-go-verification"), "-trustedrootJSONpath", str(s.trusted_root),
        "-expectedIssuer", p.issuer, "-expectedSAN", p.identity, "-artifact", str(p.pack), str(p.bundle),
    ]  # fmt: skip


VERIFIERS: dict[str, Command] = {
    "pixi-pack-ci verify": ours,
    "sigstore verify identity": sigstore_identity,
    "sigstore verify github": sigstore_github,
    "gh attestation verify": gh,
    "sigstore-js": sigstore_js,
    "cosign": cosign,
    "sigstore-go-verification": sigstore_go,
}

_KEYLESS_ONLY = "needs a certificate and a transparency-log entry; a key bundle has neither"
#: (verifier, mode or "*", case or "*") → why that verifier cannot express it.
NOT_EXPRESSIBLE = {
    ("*", "GitHub keyless", "wrong key"): "a keyless bundle has no key",
    ("*", "GitLab keyless", "wrong key"): "a keyless bundle has no key",
    ("*", "key", "wrong identity"): "a key bundle names no identity",
    ("*", "key", "wrong issuer"): "a key bundle names no issuer",
    ("*", "key", "wrong repository"): "a key bundle names no repository",
    ("sigstore verify identity", "key", "*"): _KEYLESS_ONLY,
    ("sigstore verify identity", "*", "wrong repository"): "no repository flag (verify github has one)",
    ("sigstore verify github", "GitLab keyless", "*"): "GitHub certificates only",
    ("sigstore verify github", "key", "*"): _KEYLESS_ONLY,
    ("sigstore verify github", "*", "wrong issuer"): "the issuer is fixed to GitHub Actions'",
    ("gh attestation verify", "GitLab keyless", "*"): "GitHub identities only (checked in test_provenance)",
    ("gh attestation verify", "key", "*"): "needs a certificate",
    ("sigstore-go-verification", "key", "*"): (
        "the example program always wants a certificate identity and a timestamp (log entry or RFC 3161)"
    ),
    ("sigstore-js", "*", "wrong repository"): "its policy has only SAN and issuer",
    ("cosign", "GitLab keyless", "wrong repository"): "only --certificate-github-workflow-repository",
    ("sigstore-go-verification", "*", "wrong repository"): "only SAN and issuer flags",
}


def not_expressible(verifier: str, mode: str, case: str) -> str | None:
    for v, m, c in ((verifier, mode, case), (verifier, mode, "*"), (verifier, "*", case), ("*", mode, case)):
        if (v, m, c) in NOT_EXPRESSIBLE:
            return NOT_EXPRESSIBLE[(v, m, c)]
    return None


# --- the packs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, demo_channel: object, sigstore: Sigstore) -> dict[str, Signed]:
    """One pack, attested three ways in three folders (each with its own bundle beside it)."""
    base = tmp_path_factory.mktemp("verifiers")
    project = make_project(base / "project", demo_channel)  # type: ignore[arg-type]
    pack = base / "environment.tar"
    pack_ok(project.dir, pack)
    tampered = base / "tampered" / "environment.tar"
    tampered.parent.mkdir()
    tampered.write_bytes(pack.read_bytes() + b"\0")
    key_env = {**no_ci(), "PIXI_PACK_CI_KEY_PASSWORD": KEY_PASSWORD}
    run_cli("keygen", "--output-prefix", base / "site", env=key_env, check=True)
    run_cli("keygen", "--output-prefix", base / "other", "--no-passphrase", env=no_ci(), check=True)
    trust = ["--sigstore-trust-config", str(sigstore.trust_config)]
    no_upload = {"PIXI_PACK_CI_ATTESTATION_UPLOAD": "false"}  # the table needs the bundles, not GitHub's copy
    modes = {
        "GitHub keyless": (trust, {**github_env(sigstore), **no_upload}, SAN, GITHUB_ISSUER, "acme/pixi-app"),
        "GitLab keyless": (trust, gitlab_env(), GITLAB_SAN, "https://gitlab.com", "https://gitlab.com/acme/pixi-app"),
        "key": (["--sign-key", str(base / "site.key")], key_env, "", "", ""),
    }
    signed = {}
    for mode, (flags, env, identity, issuer, repository) in modes.items():
        folder = base / mode.replace(" ", "-")
        folder.mkdir()
        copy = folder / pack.name
        shutil.copyfile(pack, copy)
        run_cli("attest", copy, *flags, env=env, check=True)
        good = Params(copy, folder / f"{pack.name}.sigstore.json", identity, issuer, repository)
        if mode == "key":
            good = replace(good, key=base / "site.pub")
        signed[mode] = Signed(
            good,
            tampered,
            base / "other.pub",
            sigstore.trusted_root,
            sigstore.trusted_root_jsonl,
            sigstore.trust_config,
        )
    return signed


# --- the table ----------------------------------------------------------------------------------


def render(outcomes: dict[tuple[str, str, str], Outcome]) -> str:
    """Rows: signing mode / verifier; columns: cases. ✔ accepted, ✘ rejected, - not expressible."""
    width = max(len(f"{m} / {v}") for m in MODES for v in VERIFIERS)
    columns = [max(len(case), len("✔ pass")) for case in CASES]
    header = "  ".join(f"{case:<{column}}" for case, column in zip(CASES, columns, strict=True))
    lines = [f"{'signing mode / verifier':<{width}}  {header}", ""]
    for mode in MODES:
        for verifier in VERIFIERS:
            cells = []
            for case, column in zip(CASES, columns, strict=True):
                outcome = outcomes.get((mode, verifier, case))
                mark = "-" if outcome is None else ("✔ pass" if outcome.accepted else "✘ fail")
                cells.append(f"{mark:<{column}}")
            lines.append(f"{mode + ' / ' + verifier:<{width}}  " + "  ".join(cells).rstrip())
        lines.append("")
    return "\n".join(lines)


def test_every_verifier_accepts_the_good_pack_and_rejects_every_bad_case(
    signed: dict[str, Signed], capsys: pytest.CaptureFixture[str]
) -> None:
    for mode in ("GitHub keyless", "GitLab keyless"):
        (entry,) = json.loads(signed[mode].good.bundle.read_text())["verificationMaterial"]["tlogEntries"]
        # sigstore-go <= 0.7.1, so cosign 2.5.0, would reject the entry at index 0 as "nil".
        assert int(entry["logIndex"]) >= FIRST_LOG_INDEX > 0
    cells = [
        (mode, verifier, case)
        for mode in MODES
        for verifier in VERIFIERS
        for case in CASES
        if not_expressible(verifier, mode, case) is None
    ]
    commands = [VERIFIERS[v](signed[m], bad(signed[m], c, m), m) for m, v, c in cells]
    with ThreadPoolExecutor(max_workers=4) as pool:  # each run is a process; 2 CPUs, mostly waiting on startup
        outcomes = dict(zip(cells, pool.map(run, commands), strict=True))
    table = render(outcomes)
    with capsys.disabled():
        print("\n" + table)
    wrong = [
        f"{m} / {v} / {c}: {'accepted' if o.accepted else 'rejected'}: {o.describe()}"
        for (m, v, c), o in outcomes.items()
        if o.accepted != (c == "good")
    ]
    assert not wrong, "\n".join(wrong)
    # Coverage, so that a longer NOT_EXPRESSIBLE cannot quietly empty the table: 61 cells (31 GitHub,
    # 21 GitLab, 9 key), each mode's good and tampered pack through 3 verifiers or more.
    assert len(outcomes) == 61, f"{len(outcomes)} cells: update this count with NOT_EXPRESSIBLE"
    for mode in MODES:
        for case in ("good", "tampered pack"):
            assert sum(1 for v in VERIFIERS if (mode, v, case) in outcomes) >= 3, (mode, case)
