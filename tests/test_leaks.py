"""Credentials never leak: not in output, logs, CI files, packs, provenance or bundles."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from harness import Project, credentialed_project, run_cli
from signing import Sigstore, assert_secret_hidden, github_env

pytestmark = pytest.mark.usefixtures("no_ci_env")  # these tests describe their own CI environment


# --- credentials ----------------------------------------------------------------------------------

URL_SECRET = "url-password-q8Zr"
AUTH_SECRET = "auth-file-token-77Kp"
ENV_SECRET = "ghs_env-token-5Wd2"
# rattler's other credential sources (test_credentials.py has how each is read)
KEYRING_SECRET = "keyring-token-3Jt9"
HOME_FILE_SECRET = "home-file-token-8Lm1"
NETRC_SECRET = "netrc-password-6Vx4"


def test_credentials_never_leak(project: Project, tmp_path: Path, sigstore: Sigstore) -> None:
    lock_dir = credentialed_project(project, tmp_path / "p", "deploy", URL_SECRET)
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"mirror.example": {"BearerToken": AUTH_SECRET}}))
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    # The keyring's entry is the one found for the server (the URL's own user and password still go
    # first); the home file and netrc come after it, read but not used.
    (tmp_path / "home/.rattler").mkdir(parents=True)
    home_entry = {"127.0.0.1": {"BearerToken": HOME_FILE_SECRET}}
    (tmp_path / "home/.rattler/credentials.json").write_text(json.dumps(home_entry))
    (tmp_path / "home/.netrc").write_text(f"machine 127.0.0.1 login n password {NETRC_SECRET}\n")
    keyring_entry = json.dumps({"BearerToken": KEYRING_SECRET})
    (tmp_path / "keyring.json").write_text(json.dumps({"rattler": {"127.0.0.1": keyring_entry}}))
    env = {
        **github_env(sigstore),
        "GITHUB_TOKEN": ENV_SECRET,
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
        "RATTLER_AUTH_FILE": str(auth),
        "HOME": str(tmp_path / "home"),
        "NETRC": "",
        "PYTHONPATH": str(Path(__file__).parent / "keyring_path"),
        "PYTHON_KEYRING_BACKEND": "pixi_pack_ci_test_keyring.FileKeyring",
        "PIXI_PACK_CI_TEST_KEYRING": str(tmp_path / "keyring.json"),
    }
    pack = tmp_path / "env.tar"
    texts = []
    for extra in (["-vv", "--json"], ["-v", "--dry-run"]):
        proc = run_cli("pack", lock_dir, "-p", "linux-64", "-o", pack, "--attest",
                       "--sigstore-trust-config", sigstore.trust_config, *extra, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode()
        texts += [proc.stdout.decode(), proc.stderr.decode()]
    failing = run_cli("pack", lock_dir, "-p", "linux-64", "-o", tmp_path / "f.tar", "-vv", "-c",
                      tmp_path / "missing.toml", env=env)  # fmt: skip
    texts += [failing.stdout.decode(), failing.stderr.decode()]
    bundle = json.loads((tmp_path / "env.tar.sigstore.json").read_text())
    texts += [
        json.dumps(bundle),
        base64.b64decode(bundle["dsseEnvelope"]["payload"]).decode(),
        summary.read_text(),
        outputs.read_text(),
        (tmp_path / "SHA256SUMS").read_text(),
        pack.read_bytes().decode("latin-1"),
        run_cli("inspect", pack, "--json", check=True).stdout.decode(),
    ]
    everything = "\n".join(texts)
    for secret in (URL_SECRET, AUTH_SECRET, ENV_SECRET, KEYRING_SECRET, HOME_FILE_SECRET, NETRC_SECRET):
        assert_secret_hidden(everything, secret)
    assert f"::add-mask::{KEYRING_SECRET}" in everything or f"::add-mask ::{KEYRING_SECRET}" in everything
    assert "deploy:" not in everything
