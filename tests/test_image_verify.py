"""``pixi-pack-ci verify`` of an image, named as ``gh attestation verify`` names it
(``oci://REGISTRY/REPO:TAG``: the bundle is found among its referrers, here through the fallback
tag, as Debian's distribution 2.8 has no referrers API) or as the image command wrote it
(``oci-layout:DIR``, ``oci-archive:FILE.tar``: the bundle written beside it). Another image, a
wrong key and an image with no bundle are refused in one line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import assert_clean_error, run_cli
from image_support import docker_registry, image_specs, need
from signing import Sigstore, github_env
from support import ChannelServer, build_channel
from test_image import ImageChannel, image_json

pytestmark = pytest.mark.posix


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageChannel]:
    base = tmp_path_factory.mktemp("verify-channel")
    build_channel(base / "channel", image_specs(), base / "work")
    server = ChannelServer(base / "channel").start()
    yield ImageChannel(base / "channel", server)
    server.stop()


def verify(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return run_cli("verify", *args)


def refused(proc: subprocess.CompletedProcess[bytes], why: str) -> None:
    line = assert_clean_error(proc)
    assert why in line, line


def test_verify_an_image_in_a_registry_and_its_outputs(channel: ImageChannel, tmp_path: Path) -> None:
    need("docker-registry")
    for name in ("site", "other"):
        run_cli("keygen", "--output-prefix", tmp_path / name, "--no-passphrase", check=True)
    key, other_key = tmp_path / "site.pub", tmp_path / "other.pub"
    project = channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    layout, archive = tmp_path / "img", tmp_path / "img.tar"
    with docker_registry(tmp_path / "registry") as registry:
        ref = f"{registry.host}/acme/app"
        signed = image_json(project, "--base", "scratch", "--push", f"{ref}:v1", "--output", f"oci-layout:{layout}",
                            "--output", f"oci-archive:{archive}", "--sign-key", tmp_path / "site.key")  # fmt: skip
        digest = signed["digest"]
        for target in (f"oci://{ref}:v1", f"oci://{ref}@{digest}", f"oci-layout:{layout}", f"oci-archive:{archive}"):
            proc = verify(target, "--key", key, "--json")
            assert proc.returncode == 0, (target, proc.stderr.decode())
            result = json.loads(proc.stdout)
            assert result["sha256"] == digest.split(":")[1] and result["subject"] == ref, result
        line = verify(f"oci://{ref}:v1", "--key", key).stdout.decode().splitlines()[0]
        assert line == f"✅ oci://{ref}:v1 (sha256 {digest.split(':')[1]}) is subject '{ref}' of a signed statement"
        refused(verify(f"oci://{ref}:v1", "--key", other_key), "signed by another key")

        # An unsigned image pushed over the tag: the tag now names an image no bundle covers.
        image_json(project, "--base", "scratch", "--label", "x=y", "--push", f"{ref}:v1")
        refused(verify(f"oci://{ref}:v1", "--key", key), "has no Sigstore bundle attached")
        # Our bundle given for it by hand: its statement names another digest.
        refusal = verify(f"oci://{ref}:v1", "--key", key, "--bundle", tmp_path / "img.sigstore.json")
        refused(refusal, "is not a subject of this attestation")
        # The signed image is still there by digest, with its referrer.
        assert verify(f"oci://{ref}@{digest}", "--key", key).returncode == 0
        refused(verify(f"oci://{ref}:nope", "--key", key), "manifest")
    refused(verify("oci://app:v1", "--key", key), "name the registry")
    refused(verify(f"oci-layout:{tmp_path / 'missing'}", "--key", key), "is not an OCI layout")


def test_verify_a_keyless_image_as_gh_does(channel: ImageChannel, tmp_path: Path, sigstore: Sigstore) -> None:
    """--attest in a GitHub job (the loopback Sigstore): ``verify oci://… --repo`` accepts the
    repository that signed, refuses another, and refuses without the loopback trusted root."""
    need("docker-registry")
    project = channel.project(tmp_path / "p", "other")
    with docker_registry(tmp_path / "registry") as registry:
        ref = f"{registry.host}/acme/app"
        image_json(project, "--base", "scratch", "--push", f"{ref}:v1", "--attest",
                   "--sigstore-trust-config", sigstore.trust_config, env=github_env(sigstore))  # fmt: skip
        root = ("--trusted-root", sigstore.trusted_root)
        accepted = verify(f"oci://{ref}:v1", "--repo", "acme/pixi-app", *root, "--json")
        assert accepted.returncode == 0, accepted.stderr.decode()
        signer = json.loads(accepted.stdout)["signer"]
        assert signer["source_repository"].endswith("acme/pixi-app"), signer
        refused(verify(f"oci://{ref}:v1", "--repo", "acme/other", *root), "acme/other")
        empty = tmp_path / "empty_root.json"
        empty.write_text('{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}')
        assert_clean_error(verify(f"oci://{ref}:v1", "--repo", "acme/pixi-app", "--trusted-root", empty))
