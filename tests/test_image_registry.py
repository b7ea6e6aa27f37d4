"""Pushing to a real registry (Debian's docker-registry, distribution 2.8, on 127.0.0.1) when it
does not go the easy way: a cross-repository mount refused, credentials that must reach one
registry only, connections broken mid-upload, Docker's credential helpers; and what an unchanged
push costs. Faults come from a proxy in front of the real registry, never from a mock of it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import assert_clean_error, run_cli
from image_support import FaultyProxy, ImageChannel, TokenServer, docker_registry, need

pytestmark = pytest.mark.posix

USER, PASSWORD = "ci-user", "s3cret-pass"
CREDS_ENV = {"PIXI_PACK_CI_REGISTRY_USERNAME": USER, "PIXI_PACK_CI_REGISTRY_PASSWORD": PASSWORD}


def image_json(*args: str | Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = run_cli("image", *args, "--json", "-q", env=env, check=True)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def skopeo(*args: str, creds: bool = False) -> subprocess.CompletedProcess[str]:
    login = ["--creds", f"{USER}:{PASSWORD}"] if creds else []
    command = ["skopeo", *args[:1], *login, *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def copy_base(layout: Path, ref: str, *, creds: bool = False) -> None:
    """The busybox layout into a registry, by skopeo (not by the code under test)."""
    login = ["--dest-creds", f"{USER}:{PASSWORD}"] if creds else []
    copied = subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", *login, f"oci:{layout}:1", f"docker://{ref}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr


def log_lines(log: Path, method: str, fragment: str) -> list[str]:
    """Access-log lines of ``method`` requests whose path holds ``fragment``."""
    return [line for line in log.read_text(errors="replace").splitlines() if f'"{method} ' in line and fragment in line]


def test_a_refused_mount_uploads_the_base_layer(image_channel: ImageChannel, base_layout: Path, tmp_path: Path) -> None:
    """A base on the registry pushed to, whose layer the registry will not mount: it answers
    202 with an upload session (the blob is not in the repository named: here a proxy renames
    ``from``) or 401 (the token service grants one repository per token, so never the base's
    pull beside the push). Either way the layer is fetched from the base and uploaded, and the
    image reads back whole."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    with docker_registry(tmp_path / "plain") as registry:
        copy_base(base_layout, f"{registry.host}/library/busybox:1")
        proxy = FaultyProxy(registry.host)
        try:
            proxy.rewrites = {"from=library/busybox": "from=library/elsewhere"}
            pushed = image_json(project, "--base", f"{proxy.host}/library/busybox:1", "--entrypoint", "greet",
                                "--push", f"{proxy.host}/acme/app:v1")  # fmt: skip
        finally:
            proxy.stop()
        layer = pushed["images"][0]["layers"][0]
        assert layer["contents"] == "base"
        hexdigest = layer["digest"].split(":")[1]
        assert pushed["pushed"][0]["blobs"] == {"uploaded": len(pushed["images"][0]["layers"]) + 1}
        refused = log_lines(registry.log, "POST", f"mount=sha256:{hexdigest}&from=library/elsewhere")
        assert len(refused) == 1 and '" 202 ' in refused[0], refused
        assert len([line for line in registry.uploads() if "/acme/app/" in line and hexdigest in line]) == 1
        inspected = skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/acme/app:v1")
        assert inspected.returncode == 0, inspected.stderr
        assert json.loads(inspected.stdout)["Digest"] == pushed["digest"]

    tokens = TokenServer(tmp_path / "tokens", USER, PASSWORD, one_repository=True)
    try:
        with docker_registry(tmp_path / "token", auth=tokens.auth_section()) as registry:
            copy_base(base_layout, f"{registry.host}/library/busybox:1", creds=True)
            pushed = image_json(project, "--base", f"{registry.host}/library/busybox:1", "--entrypoint", "greet",
                                "--push", f"{registry.host}/acme/app:v1", env=CREDS_ENV)  # fmt: skip
            hexdigest = pushed["images"][0]["layers"][0]["digest"].split(":")[1]
            assert pushed["pushed"][0]["blobs"] == {"uploaded": len(pushed["images"][0]["layers"]) + 1}
            mounts = log_lines(registry.log, "POST", f"mount=sha256:{hexdigest}&from=library/busybox")
            assert mounts and all('" 401 ' in line for line in mounts), mounts
            assert len([line for line in registry.uploads() if "/acme/app/" in line and hexdigest in line]) == 1
            inspected = skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/acme/app:v1", creds=True)
            assert inspected.returncode == 0, inspected.stderr
            assert json.loads(inspected.stdout)["Digest"] == pushed["digest"]
    finally:
        tokens.stop()


def test_env_credentials_reach_only_the_push_registry(
    image_channel: ImageChannel, base_layout: Path, tmp_path: Path
) -> None:
    """PIXI_PACK_CI_REGISTRY_USERNAME/_PASSWORD name no registry: with a base on one registry and
    the push to another, both behind token services, only the push target's token service gets
    them; the base's is asked anonymously (its repository may be pulled by anyone)."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    base_tokens = TokenServer(tmp_path / "base-tokens", USER, PASSWORD)
    push_tokens = TokenServer(tmp_path / "push-tokens", USER, PASSWORD)
    env = {**CREDS_ENV, "DOCKER_CONFIG": str(tmp_path / "no-docker-config")}
    try:
        with (
            docker_registry(tmp_path / "base", auth=base_tokens.auth_section()) as source,
            docker_registry(tmp_path / "push", auth=push_tokens.auth_section()) as target,
        ):
            copy_base(base_layout, f"{source.host}/library/busybox:1", creds=True)
            before = len(base_tokens.authorizations)
            pushed = image_json(project, "--base", f"{source.host}/library/busybox:1", "--entrypoint", "greet",
                                "--push", f"{target.host}/acme/app:v1", env=env)  # fmt: skip
            assert pushed["pushed"][0]["blobs"]["uploaded"] == len(pushed["images"][0]["layers"]) + 1
            asked = base_tokens.authorizations[before:]
            assert asked and all(a is None for a in asked), asked  # the base was read, anonymously
            assert push_tokens.authorizations and set(push_tokens.authorizations) == {push_tokens.expected}
            inspected = skopeo("inspect", "--tls-verify=false", f"docker://{target.host}/acme/app:v1", creds=True)
            assert json.loads(inspected.stdout)["Digest"] == pushed["digest"], inspected.stderr
    finally:
        base_tokens.stop()
        push_tokens.stop()


def test_an_upload_broken_mid_body_starts_a_new_session(image_channel: ImageChannel, tmp_path: Path) -> None:
    """A connection broken after part of a blob reached the registry (a proxy forwards half the
    body, then drops both sides): that upload session holds part of the blob, so the upload
    starts again with a new session, monolithic or in chunks, and skopeo copies the image whole.
    A fault that never ends: one line, and no tag."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    with docker_registry(tmp_path / "registry") as registry:
        proxy = FaultyProxy(registry.host)
        try:
            ref = f"{proxy.host}/acme/app"
            for tag, faults in (
                ("whole", {"PUT /blobs/uploads/": ["partial"]}),
                ("chunks", {"PUT /blobs/uploads/": ["413"], "PATCH /blobs/uploads/": ["partial"]}),
            ):
                proxy.faults = faults
                proxy.seen.clear()
                pushed = image_json(project, "--base", "scratch", "--label", f"t={tag}", "--push", f"{ref}:{tag}")
                assert not any(proxy.faults.values())  # every fault was served, and survived
                # A session more than blobs uploaded (two with chunks: the 413 one): none used again after a break.
                starts = [r for r in proxy.seen if r == "POST /v2/acme/app/blobs/uploads/"]
                assert len(starts) == pushed["pushed"][0]["blobs"]["uploaded"] + 1 + (tag == "chunks"), proxy.seen
                out = tmp_path / f"pulled-{tag}"
                copied = skopeo(
                    "copy", "--src-tls-verify=false", f"docker://{registry.host}/acme/app:{tag}", f"oci:{out}:x"
                )
                assert copied.returncode == 0, copied.stderr
                index = json.loads((out / "index.json").read_text())
                assert index["manifests"][0]["digest"] == pushed["digest"]
            proxy.faults = {"PUT /blobs/uploads/": ["partial"] * 100}
            proxy.seen.clear()
            failed = run_cli("image", project, "--base", "scratch", "--label", "t=never", "--push", f"{ref}:never")
            line = assert_clean_error(failed)
            assert "failed to take sha256:" in line and "after 5 attempts" in line, line
            assert not any(r.startswith("PUT /v2/acme/app/manifests/") for r in proxy.seen)
            tag = skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/acme/app:never")
            assert tag.returncode != 0 and "manifest unknown" in tag.stderr, tag.stderr
        finally:
            proxy.stop()


def requests_since(log: Path, start: int) -> list[str]:
    """``"METHOD path"`` of the requests pixi-pack-ci made after the log's first ``start`` lines."""
    lines = log.read_text(errors="replace").splitlines()[start:]
    return [line.split('"')[1].rsplit(" ", 1)[0] for line in lines if '"pixi-pack-ci/' in line]


def test_an_unchanged_push_is_a_head_per_blob_and_one_manifest_put(image_channel: ImageChannel, tmp_path: Path) -> None:
    """Pushed again unchanged, a single-platform image costs one HEAD per blob and one PUT, of
    its manifest by tag (readable by digest too); two platforms: their manifests by digest and
    the index by tag, after every blob. Without a tag the top goes by digest."""
    need("skopeo")
    one = image_channel.project(tmp_path / "one", "greeter", "libdata=1.0")
    two = image_channel.project(tmp_path / "two", "other", platforms=("linux-64", "linux-aarch64"))
    with docker_registry(tmp_path / "registry") as registry:
        ref = f"{registry.host}/acme/app"
        first = image_json(one, "--base", "scratch", "--push", f"{ref}:v1")
        blobs = len(first["images"][0]["layers"]) + 1
        start = len(registry.log.read_text().splitlines())
        again = image_json(one, "--base", "scratch", "--push", f"{ref}:v1")
        assert again["digest"] == first["digest"]
        made = requests_since(registry.log, start)
        assert sorted(made) == sorted(
            [f"HEAD /v2/acme/app/blobs/{d['digest']}" for d in first["images"][0]["layers"]]
            + [f"HEAD /v2/acme/app/blobs/{first['images'][0]['config_digest']}", "PUT /v2/acme/app/manifests/v1"]
        ), made
        assert len(made) == blobs + 1
        by_digest = skopeo("inspect", "--tls-verify=false", f"docker://{ref}@{first['digest']}")
        assert json.loads(by_digest.stdout)["Digest"] == first["digest"], by_digest.stderr

        args = ("-p", "linux-64", "-p", "linux-aarch64", "--base", "scratch")
        start = len(registry.log.read_text().splitlines())
        multi = image_json(two, *args, "--push", f"{ref}:multi")
        made = requests_since(registry.log, start)
        puts = [r for r in made if r.startswith("PUT /v2/acme/app/manifests/")]
        children = {f"PUT /v2/acme/app/manifests/{i['digest']}" for i in multi["images"]}
        assert set(puts[:2]) == children and puts[2:] == ["PUT /v2/acme/app/manifests/multi"], puts
        assert max(i for i, r in enumerate(made) if "/blobs/" in r) < made.index(puts[0])
        start = len(registry.log.read_text().splitlines())
        image_json(two, *args, "--push", f"{ref}:multi")
        made = requests_since(registry.log, start)
        assert [r for r in made if not r.startswith("HEAD /v2/acme/app/blobs/")] == puts, made
        start = len(registry.log.read_text().splitlines())
        image_json(two, *args, "--push", ref)
        puts = [r for r in requests_since(registry.log, start) if r.startswith("PUT ")]
        assert puts[2:] == [f"PUT /v2/acme/app/manifests/{multi['digest']}"], puts


def credential_helper(folder: Path, name: str, answers: dict[str, dict[str, str]]) -> Path:
    """``docker-credential-<name>`` in ``folder``: a real program speaking the helper protocol
    (``get``, the server on standard input, JSON on standard output, exit 1 with Docker's message
    for a server it has nothing for), noting each call in ``<name>.calls``."""
    cases = "".join(f"  '{server}') printf '%s' '{json.dumps(answer)}' ;;\n" for server, answer in answers.items())
    script = folder / f"docker-credential-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    script.write_text(
        '#!/bin/sh\n[ "$1" = get ] || exit 2\nserver=$(cat)\n'
        f'echo "get $server" >> "{folder / name}.calls"\n'
        f'case "$server" in\n{cases}  *) echo "credentials not found in native keychain"; exit 1 ;;\nesac\n'
    )
    script.chmod(0o755)
    return folder / f"{name}.calls"


def test_docker_credential_helpers_in_docker_s_order(image_channel: ImageChannel, tmp_path: Path) -> None:
    """credHelpers for the registry, else credsStore, else auths (a helper missing, failing or
    without the registry: the auths entry, else anonymous with a -v note, no traceback); a
    ``<token>`` user is an identity token, sent to the token service as an OAuth2 refresh token.
    Helpers are real programs on PATH; their secrets are never printed."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "other")
    tokens = TokenServer(tmp_path / "tokens", USER, PASSWORD, refresh_token="refresh-tok-4711")
    try:
        with docker_registry(tmp_path / "registry", auth=tokens.auth_section()) as registry:
            host, ref = registry.host, f"{registry.host}/acme/app"
            bin_dir, docker = tmp_path / "bin", tmp_path / "docker"
            good = credential_helper(bin_dir, "good", {host: {"ServerURL": host, "Username": USER, "Secret": PASSWORD}})
            wrong = credential_helper(bin_dir, "wrong", {host: {"Username": USER, "Secret": "wrong-pass"}})
            failing = credential_helper(bin_dir, "failing", {})
            identity = credential_helper(
                bin_dir, "identity", {host: {"Username": "<token>", "Secret": "refresh-tok-4711"}}
            )
            env = {
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "DOCKER_CONFIG": str(docker),
                "PIXI_PACK_CI_REGISTRY_USERNAME": "",
            }
            docker.mkdir()
            good_auth = {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
            wrong_auth = {"auth": base64.b64encode(f"{USER}:wrong-pass".encode()).decode()}

            def push(config: dict[str, Any], tag: str, *flags: str) -> subprocess.CompletedProcess[bytes]:
                (docker / "config.json").write_text(json.dumps(config))
                return run_cli("image", project, "--base", "scratch", "--label", f"t={tag}", "--push",
                               f"{ref}:{tag}", *flags, env=env)  # fmt: skip

            # The registry's own helper first, before credsStore and auths.
            first = push(
                {"credHelpers": {host: "good"}, "credsStore": "wrong", "auths": {host: wrong_auth}}, "v1", "-vv"
            )
            assert first.returncode == 0, first.stderr.decode()
            assert good.read_text() == f"get {host}\n" and not wrong.exists()
            assert PASSWORD not in (first.stdout + first.stderr).decode()
            # credsStore before auths, as docker.
            second = push({"credsStore": "good", "auths": {host: wrong_auth}}, "v2")
            assert second.returncode == 0, second.stderr.decode()
            assert good.read_text().count("get") == 2
            # A helper not on PATH: the auths entry, with a note.
            third = push({"credsStore": "absent", "auths": {host: good_auth}}, "v3", "-v")
            assert third.returncode == 0, third.stderr.decode()
            assert "docker-credential-absent, which is not on PATH" in third.stderr.decode()
            # A helper with nothing for the registry and no auths entry: anonymous, refused in one line.
            refused = push({"credHelpers": {host: "failing"}}, "v4")
            assert "refused" in assert_clean_error(refused)
            assert failing.read_text() == f"get {host}\n"
            noted = push({"credHelpers": {host: "failing"}}, "v4", "-v")
            err = noted.stderr.decode()
            assert noted.returncode == 1 and "Traceback" not in err
            assert f"docker-credential-failing gave no credentials for {host} (exit 1: credentials not found" in err
            # An identity token: an OAuth2 refresh token at the token service.
            fifth = push({"credHelpers": {host: "identity"}}, "v5", "-vv")
            assert fifth.returncode == 0, fifth.stderr.decode()
            assert identity.read_text() == f"get {host}\n"
            assert tokens.forms and all(f["grant_type"] == ["refresh_token"] for f in tokens.forms)
            assert {f["refresh_token"][0] for f in tokens.forms} == {"refresh-tok-4711"}
            assert "refresh-tok-4711" not in (fifth.stdout + fifth.stderr).decode()
            # An auths entry as `az acr login` writes it: an identity token beside an `auth` with an
            # empty password; the identity token is what docker uses, and so is it here.
            acr = {"auth": base64.b64encode(b"00000000-0000-0000-0000-000000000000:").decode(),
                   "identitytoken": "refresh-tok-4711"}  # fmt: skip
            forms = len(tokens.forms)
            sixth = push({"auths": {host: acr}}, "v6")
            assert sixth.returncode == 0, sixth.stderr.decode()
            assert len(tokens.forms) > forms and tokens.forms[-1]["refresh_token"] == ["refresh-tok-4711"]
            tags = skopeo("list-tags", "--tls-verify=false", f"docker://{ref}", creds=True)
            assert sorted(json.loads(tags.stdout)["Tags"]) == ["v1", "v2", "v3", "v5", "v6"], tags.stderr
    finally:
        tokens.stop()
