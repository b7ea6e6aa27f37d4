"""Credential sources as rattler reads them: each one alone, and rattler's order when they disagree.

Sources: ``--auth-file``, ``$RATTLER_AUTH_FILE``, the keyring (through ``keyring``'s backend
interface, over a file: see keyring_path/), ``~/.rattler/credentials.json``, netrc (``$NETRC`` or
``~/.netrc``). The package server accepts exactly one credential, so a pack that works proves which
source was used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import Project, assert_clean_error, pack_ok, run_cli
from support import basic_auth

ORDER = ("flag", "env", "keyring", "home", "netrc")
KEYRING_PATH = Path(__file__).parent / "keyring_path"
HOST = "127.0.0.1"


def token(source: str) -> str:
    return f"token-from-{source}-4k2q"


def expected_header(source: str) -> str:
    return basic_auth("netrc-user", token(source)) if source == "netrc" else f"Bearer {token(source)}"


def sources(folder: Path, present: dict[str, str], host: str = HOST) -> tuple[list[str | Path], dict[str, str]]:
    """CLI arguments and environment with credentials for ``host`` in the ``present`` sources
    (source → secret); the others are empty."""
    home = folder / "home"
    (home / ".rattler").mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "NETRC": "", "PYTHONPATH": str(KEYRING_PATH),
           "PYTHON_KEYRING_BACKEND": "pixi_pack_ci_test_keyring.FileKeyring",
           "PIXI_PACK_CI_TEST_KEYRING": str(folder / "keyring.json")}  # fmt: skip
    args: list[str | Path] = []
    for source, secret in present.items():
        entry = {"BearerToken": secret}
        if source == "flag":
            (folder / "flag.json").write_text(json.dumps({host: entry}))
            args = ["--auth-file", folder / "flag.json"]
        elif source == "env":
            (folder / "env.json").write_text(json.dumps({host: entry}))
            env["RATTLER_AUTH_FILE"] = str(folder / "env.json")
        elif source == "keyring":  # as pixi auth login stores it: service rattler, user = host
            (folder / "keyring.json").write_text(json.dumps({"rattler": {host: json.dumps(entry)}}))
        elif source == "home":
            (home / ".rattler" / "credentials.json").write_text(json.dumps({host: entry}))
        elif source == "netrc":
            (home / ".netrc").write_text(f"machine {host}\n  login netrc-user\n  password {secret}\n")
    return args, env


def pack(project: Project, out: Path, args: list[str | Path], env: dict[str, str], *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("pack", project.dir, "-p", "linux-64", "-o", out, *args, *extra, env=env)


@pytest.mark.parametrize("source", ORDER)
def test_each_credential_source_alone(project: Project, tmp_path: Path, source: str) -> None:
    project.channel.server.required_auth = {"/": expected_header(source)}
    args, env = sources(tmp_path, {source: token(source)})
    proc = pack(project, tmp_path / "env.tar", args, env, "-vv")
    assert proc.returncode == 0, proc.stderr.decode()
    log = proc.stderr.decode()
    names = {"flag": "--auth-file", "env": "$RATTLER_AUTH_FILE", "keyring": "keyring",
             "home": ".rattler/credentials.json", "netrc": "netrc ("}  # fmt: skip
    assert f"credentials for {HOST} from " in log and names[source] in log
    assert token(source) not in log and token(source) not in proc.stdout.decode()


def test_sources_that_disagree_follow_rattlers_order(project: Project, tmp_path: Path) -> None:
    """Every source holds another token; the first in rattler's order wins, and with it gone the next."""
    server = project.channel.server
    for i, winner in enumerate(ORDER):
        server.required_auth = {"/": expected_header(winner)}
        args, env = sources(tmp_path / winner, {s: token(s) for s in ORDER[i:]})
        proc = pack(project, tmp_path / f"{winner}.tar", args, env)
        assert proc.returncode == 0, (winner, proc.stderr.decode())


def test_a_host_in_a_later_source_beats_a_wildcard_in_an_earlier_one(project: Project, tmp_path: Path) -> None:
    """rattler asks every source for the host before any source for ``*.domain``."""
    lock = project.lockfile.read_text().replace("127.0.0.1", "localhost")
    project.lockfile.write_text(lock)
    project.channel.server.required_auth = {"/": expected_header("netrc")}
    _, env = sources(tmp_path, {"netrc": token("netrc")}, host="localhost")
    (tmp_path / "flag.json").write_text(json.dumps({"*.localhost": {"BearerToken": token("flag")}}))
    proc = pack(project, tmp_path / "env.tar", ["--auth-file", tmp_path / "flag.json"], env)
    assert proc.returncode == 0, proc.stderr.decode()
    # and the wildcard alone is used
    project.channel.server.required_auth = {"/": expected_header("flag")}
    pack_ok(project.dir, tmp_path / "w.tar", "--auth-file", tmp_path / "flag.json")


def test_refused_and_broken_sources(project: Project, tmp_path: Path) -> None:
    server = project.channel.server
    server.required_auth = {"/": "Bearer the-right-one-0x"}
    args, env = sources(tmp_path, {"netrc": token("netrc")})
    line = assert_clean_error(pack(project, tmp_path / "e.tar", args, env), code=1)
    assert f"the credentials for {HOST} from netrc (" in line and "were refused" in line
    # a broken ~/.rattler/credentials.json stops the run, as it stops rattler; naming the file
    (tmp_path / "home/.rattler/credentials.json").write_text("{")
    line = assert_clean_error(pack(project, tmp_path / "e.tar", args, env), code=2)
    assert ".rattler/credentials.json is not valid JSON" in line
    # a broken netrc, a keyring entry that is no credential, a $RATTLER_AUTH_FILE that does not
    # exist: warned about and passed over, as rattler does; the next source still answers
    (tmp_path / "home/.rattler/credentials.json").write_text(json.dumps({HOST: {"BearerToken": "the-right-one-0x"}}))
    (tmp_path / "home/.netrc").write_text("machine\n")
    (tmp_path / "keyring.json").write_text(json.dumps({"rattler": {HOST: "not json"}}))
    env["RATTLER_AUTH_FILE"] = str(tmp_path / "missing.json")
    proc = pack(project, tmp_path / "e.tar", args, env)
    assert proc.returncode == 0, proc.stderr.decode()
    warnings = proc.stderr.decode()
    assert "could not read netrc file" in warnings and "is not a rattler credential" in warnings
    assert "RATTLER_AUTH_FILE names" in warnings
