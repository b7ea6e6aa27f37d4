"""slsa-github-generator's generic generator (``generator_generic_slsa3.yml@v2.1.0``), played on
the loopback Sigstore.

The generator is a reusable workflow that runs on GitHub's runners and signs with the public-good
Sigstore, so it cannot run here. This module writes what it writes: it parses the ``hashes`` input
exactly as its ``parseSubjects`` does, builds the SLSA v0.2 statement in the shape of its real
v2.1.0 output (``../shared/reference/slsa-generator-v2.1.0``, checked by test_slsa_generator), and
signs it through sigstore-python with the identity the generator's job has: SAN = the generator
workflow at its tag, source repository and ref = the caller's.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from signing import Sigstore
from sigstore_double import fake_github_token

GENERATOR = "slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml"
GENERATOR_REF = f"{GENERATOR}@refs/tags/v2.1.0"
GENERIC_BUILD_TYPE = "https://github.com/slsa-framework/slsa-github-generator/generic@v1"

_SHA = re.compile(r"^[a-fA-F0-9]{64}$")


def parse_subjects(hashes: str) -> list[dict[str, Any]]:
    """The generator's ``parseSubjects``: base64 (standard alphabet), then per line split once on a
    space or tab; the digest must be 64 hex digits, the name is what follows, trimmed, unique."""
    text = base64.b64decode(hashes, validate=True).decode()
    subjects: list[dict[str, Any]] = []
    for line in text.splitlines():
        parts = re.split(r"[\t ]", line.strip(), maxsplit=1)
        digest = parts[0].strip().lower()
        if not digest:
            continue
        if not _SHA.match(digest):
            raise ValueError(f"unexpected sha256 hash format for {digest!r}")
        if len(parts) == 1:
            raise ValueError(f"expected subject name for hash {digest!r}")
        name = parts[1].strip()
        if any(s["name"] == name for s in subjects):
            raise ValueError(f"duplicate subject: {name!r}")
        subjects.append({"name": name, "digest": {"sha256": digest}})
    return subjects


def generator_statement(
    subjects: list[dict[str, Any]], repository: str, ref: str, commit: str, workflow: str
) -> dict[str, Any]:
    """The statement generator_generic_slsa3 v2.1.0 signs, field for field as in its real output."""
    source = f"git+https://github.com/{repository}@{ref}"
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": subjects,
        "predicate": {
            "builder": {"id": f"https://github.com/{GENERATOR_REF}"},
            "buildType": GENERIC_BUILD_TYPE,
            "invocation": {
                "configSource": {"uri": source, "digest": {"sha1": commit}, "entryPoint": workflow},
                "environment": {"github_event_name": "push", "github_ref": ref, "github_sha1": commit},
            },
            "metadata": {
                "buildInvocationID": "4242-1",
                "completeness": {"parameters": True, "environment": False, "materials": False},
                "reproducible": False,
            },
            "materials": [{"uri": source, "digest": {"sha1": commit}}],
        },
    }


def sign_as_generator(
    sigstore: Sigstore,
    statement: dict[str, Any],
    out: Path,
    *,
    repository: str,
    ref: str,
    commit: str,
    workflow: str,
    job_workflow_ref: str = GENERATOR_REF,
) -> Path:
    """Sign ``statement`` as the generator's job would (Fulcio + Rekor v1 dsse entry); write the
    bundle to ``out`` (the generator's ``multiple.intoto.jsonl``)."""
    from sigstore.dsse import Statement
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken
    from sigstore.sign import SigningContext

    owner, name = repository.split("/")
    token = fake_github_token(owner, name, workflow, ref, commit, job_workflow_ref=job_workflow_ref)
    trust = ClientTrustConfig.from_json(sigstore.trust_config.read_text())
    trust.force_tlog_version = 1  # the generator writes Rekor v1 dsse entries
    payload = json.dumps(statement).encode()
    # sigstore-python builds only Statement/v1, the generator writes v0.1: validate a v1 twin, then
    # sign the real bytes (only these are signed and logged).
    signed = Statement(json.dumps({**statement, "_type": "https://in-toto.io/Statement/v1"}).encode())
    signed._contents = payload
    with SigningContext.from_trust_config(trust).signer(IdentityToken(token)) as signer:
        bundle = signer.sign_dsse(signed)
    out.write_text(bundle.to_json())
    return out
