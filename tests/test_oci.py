"""``oci://`` channels: conda packages in a real OCI registry (Debian's docker-registry on 127.0.0.1),
pushed as channel mirrors push them (tests/helpers/oci_channel.py), pulled anonymously and with a token."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import DemoChannel, Project, assert_clean_error, run_cli
from oci_channel import Registry, TokenService
from test_s3 import everything, mixed_lockfile

USER, PASSWORD = "mirror-reader", "registry-password-5Qz8"


def push_channel(registry: Registry, channel_path: str, channel: DemoChannel) -> list[str]:
    return [registry.push_package(channel_path, package, package.parent.name)
            for sub in ("linux-64", "noarch") for package in sorted((channel.path / sub).glob("*.*"))
            if package.name.endswith((".conda", ".tar.bz2"))]  # fmt: skip


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, demo_channel: DemoChannel) -> Iterator[Registry]:
    """A registry without authentication, as a mirror inside a company network."""
    server = Registry(tmp_path_factory.mktemp("registry"))
    push_channel(server, "channel-mirrors/demo", demo_channel)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory, demo_channel: DemoChannel) -> Iterator[Registry]:
    """A registry behind a token service, as ghcr.io: public/ pulls anonymously, private/ with a login."""
    work = tmp_path_factory.mktemp("token-registry")
    tokens = TokenService(work, USER, PASSWORD)
    server = Registry(work, tokens)
    push_channel(server, "public/demo", demo_channel)
    server.private = push_channel(server, "private/demo", demo_channel)  # type: ignore[attr-defined]
    yield server
    server.stop()
    tokens.stop()


def test_oci_channel_packs_and_unpacks(project: Project, registry: Registry, tmp_path: Path) -> None:
    lock = mixed_lockfile(project, tmp_path / "p", {"*": f"oci://{registry.host}/channel-mirrors/demo/",
                                                    "libgreet-1.2.3-h1234_0.conda": project.channel.url})  # fmt: skip
    assert f"conda: oci://{registry.host}/channel-mirrors/demo/linux-64/hello-tool-1.0-0.conda" in lock.read_text()
    run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "env.tar", check=True)
    run_cli("unpack", tmp_path / "env.tar", "-o", tmp_path / "deploy", check=True)
    assert (tmp_path / "deploy/env/bin/hello-tool").is_file()
    assert (tmp_path / "deploy/env/lib/placeholder-bin.dat").is_file()  # a .tar.bz2 (package.v1 layer)


def test_oci_without_sha256_goes_through_the_manifest(project: Project, registry: Registry, tmp_path: Path) -> None:
    """A package the lockfile knows only by md5 is found by tag, through its manifest's package layer."""
    lock = mixed_lockfile(project, tmp_path / "p", {"*": f"oci://{registry.host}/channel-mirrors/demo/"})
    lock.write_text(re.sub(r"\n  sha256: [0-9a-f]{64}", "", lock.read_text()))
    assert "sha256:" not in lock.read_text()
    run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "env.tar", check=True)
    # a tag that is not there: one line
    lock.write_text(lock.read_text().replace("hello-tool-1.0-0.conda", "hello-tool-1.0-9.conda"))
    line = assert_clean_error(run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "m.tar"), code=1)
    assert "manifest channel-mirrors/demo/linux-64/hello-tool:1.0-9) answered 404" in line


def test_https_channel_mirrored_into_oci(project: Project, registry: Registry, tmp_path: Path) -> None:
    lock = mixed_lockfile(project, tmp_path / "p", {"*": "https://conda.invalid/demo/"})
    config = tmp_path / "config.toml"
    config.write_text(f'[mirrors]\n"https://conda.invalid/demo" = ["oci://{registry.host}/channel-mirrors/demo"]\n')
    run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "env.tar", "-c", config, check=True)


def test_oci_tokens_anonymous_and_with_credentials(project: Project, token_registry: Registry, tmp_path: Path) -> None:
    host, tokens = token_registry.host, token_registry.tokens
    assert tokens is not None
    public = mixed_lockfile(project, tmp_path / "pub", {"*": f"oci://{host}/public/demo/"})
    private = mixed_lockfile(project, tmp_path / "priv", {"*": f"oci://{host}/private/demo/"})
    out = tmp_path / "env.tar"
    # anonymous pull tokens for public repositories, as ghcr.io's mirrors
    run_cli("pack", public.parent, "-p", "linux-64", "-o", out, check=True)
    assert tokens.requests["anonymous"] > 0 and tokens.requests["with credentials"] == 0
    # the private ones refuse an anonymous token: one line
    line = assert_clean_error(run_cli("pack", private.parent, "-p", "linux-64", "-o", out), code=1)
    assert f"answered 401 (no credentials for {host}: see --auth-file)" in line
    # a login from the auth file, exchanged for a pull token
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"127.0.0.1": {"BasicHTTP": {"username": USER, "password": PASSWORD}}}))
    proc = run_cli("pack", private.parent, "-p", "linux-64", "-o", out, "--auth-file", auth, "-vv")
    assert proc.returncode == 0, proc.stderr.decode()
    assert tokens.requests["with credentials"] > 0 and PASSWORD not in everything(proc)
    run_cli("unpack", out, "-o", tmp_path / "deploy", check=True)
    # a wrong password: the token service says no, in one line, without the password
    auth.write_text(json.dumps({"127.0.0.1": {"BasicHTTP": {"username": USER, "password": "wrong-pass-7Yt"}}}))
    line = assert_clean_error(run_cli("pack", private.parent, "-p", "linux-64", "-o", out, "--auth-file", auth))
    assert f"the token service of {host} refused the credentials from --auth-file" in line and "wrong-pass" not in line
    # a stored bearer token is a registry token: sent as it is, no exchange
    repositories = [ref.split(":")[0] for ref in token_registry.private]  # type: ignore[attr-defined]
    registry_token = tokens.token(repositories, ["pull"])
    auth.write_text(json.dumps({"127.0.0.1": {"BearerToken": registry_token}}))
    before = dict(tokens.requests)
    proc = run_cli("pack", private.parent, "-p", "linux-64", "-o", out, "--auth-file", auth, "-vv", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    assert dict(tokens.requests) == before and registry_token not in everything(proc)
