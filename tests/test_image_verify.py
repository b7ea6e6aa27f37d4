"""``pixi-pack-ci verify`` of an image, named as ``gh attestation verify`` names it
(``oci://REGISTRY/REPO:TAG``: the bundle is found among its referrers, here through the fallback
tag, as Debian's distribution 2.8 has no referrers API) or as the image command wrote it
(``oci-layout:DIR``, ``oci-archive:FILE.tar``: the bundle written beside it). Another image, a
wrong key and an image with no bundle are refused in one line."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import assert_clean_error, run_cli
from image_support import ImageChannel, docker_registry, image_json, need
from signing import Sigstore, github_env

pytestmark = pytest.mark.posix


def verify(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return run_cli("verify", *args)


def refused(proc: subprocess.CompletedProcess[bytes], why: str) -> None:
    line = assert_clean_error(proc)
    assert why in line, line


def sign_and_push(project: Path, tmp_path: Path, ref: str) -> dict[str, Any]:
    """``project``'s image signed with ``tmp_path/site.key`` (made here), pushed to ``ref:v1`` and
    written to ``tmp_path/img`` (layout) and ``tmp_path/img.tar`` (archive): its ``--json``."""
    run_cli("keygen", "--output-prefix", tmp_path / "site", "--no-passphrase", check=True)
    outputs = ("--output", f"oci-layout:{tmp_path / 'img'}", "--output", f"oci-archive:{tmp_path / 'img.tar'}")
    key = ("--sign-key", tmp_path / "site.key")
    return image_json(project, "--base", "scratch", "--push", f"{ref}:v1", *outputs, *key)


def test_verify_an_image_in_a_registry_and_its_outputs(image_channel: ImageChannel, tmp_path: Path) -> None:
    need("docker-registry")
    run_cli("keygen", "--output-prefix", tmp_path / "other", "--no-passphrase", check=True)
    key, other_key = tmp_path / "site.pub", tmp_path / "other.pub"
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    layout, archive = tmp_path / "img", tmp_path / "img.tar"
    with docker_registry(tmp_path / "registry") as registry:
        ref = f"{registry.host}/acme/app"
        digest = sign_and_push(project, tmp_path, ref)["digest"]
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


def test_verify_a_keyless_image_as_gh_does(image_channel: ImageChannel, tmp_path: Path, sigstore: Sigstore) -> None:
    """--attest in a GitHub job (the loopback Sigstore): ``verify oci://… --repo`` accepts the
    repository that signed, refuses another, and refuses without the loopback trusted root."""
    need("docker-registry")
    project = image_channel.project(tmp_path / "p", "other")
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


def test_verify_checks_the_image_bytes_and_passes_over_bad_referrers(
    image_channel: ImageChannel, tmp_path: Path
) -> None:
    """A signature covers a digest, so verify hashes what the digest stands for: a changed layer
    in a layout, or an archive whose manifest.json (what docker load reads) names another image,
    is refused. In a registry, referrers that are not ours (about another image, or served with
    other bytes than their digest) are passed over, and ours still verifies."""
    need("docker-registry")
    from image_support import FaultyProxy

    key = tmp_path / "site.pub"
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    layout, archive = tmp_path / "img", tmp_path / "img.tar"
    with docker_registry(tmp_path / "registry") as registry:
        ref = f"{registry.host}/acme/app"
        signed = sign_and_push(project, tmp_path, ref)
        digest = signed["digest"]
        # Another image's signed referrer, listed under our image's fallback tag as well.
        other = image_json(project, "--base", "scratch", "--label", "x=y", "--push", f"{ref}:v2",
                           "--sign-key", tmp_path / "site.key")  # fmt: skip
        ours_tag = f"http://{registry.host}/v2/acme/app/manifests/{digest.replace(':', '-')}"
        theirs_tag = f"http://{registry.host}/v2/acme/app/manifests/{other['digest'].replace(':', '-')}"
        accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
        with urllib.request.urlopen(urllib.request.Request(ours_tag, headers=accept)) as response:
            ours = json.loads(response.read())
        with urllib.request.urlopen(urllib.request.Request(theirs_tag, headers=accept)) as response:
            theirs = json.loads(response.read())
        ours["manifests"] = theirs["manifests"] + ours["manifests"]
        index_type = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
        request = urllib.request.Request(ours_tag, data=json.dumps(ours).encode(), method="PUT", headers=index_type)
        urllib.request.urlopen(request).close()
        proc = verify(f"oci://{ref}:v1", "--key", key, "-v")
        assert proc.returncode == 0, proc.stderr.decode()
        assert "it is about another image" in proc.stderr.decode()
        # Our bundle's blob served as other bytes (a proxy asks the registry for another blob).
        (bundle_layer,) = [m for m in ours["manifests"] if m not in theirs["manifests"]]
        referrer_url = f"http://{registry.host}/v2/acme/app/manifests/{bundle_layer['digest']}"
        oci_manifest = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        with urllib.request.urlopen(urllib.request.Request(referrer_url, headers=oci_manifest)) as response:
            bundle_blob = json.loads(response.read())["layers"][0]["digest"]
        proxy = FaultyProxy(registry.host)
        try:
            proxy.rewrites = {f"/blobs/{bundle_blob}": f"/blobs/{signed['images'][0]['config_digest']}"}
            refused(verify(f"oci://{proxy.host}/acme/app:v1", "--key", key), "has no Sigstore bundle attached")
            noted = verify(f"oci://{proxy.host}/acme/app:v1", "--key", key, "-v").stderr.decode()
            assert "with another digest" in noted and "Traceback" not in noted
        finally:
            proxy.stop()

    # A layout with one layer changed.
    assert verify(f"oci-layout:{layout}", "--key", key).returncode == 0
    layer = layout / "blobs" / "sha256" / signed["images"][0]["layers"][0]["digest"].split(":")[1]
    layer.write_bytes(layer.read_bytes() + b"\0")
    refused(verify(f"oci-layout:{layout}", "--key", key), "the image was changed")
    # An archive whose manifest.json sends docker load to another config.
    changed = tmp_path / "changed.tar"
    with tarfile.open(archive) as source, tarfile.open(changed, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and data is not None:
                docker = json.loads(data.read())
                docker[0]["Config"] = "blobs/sha256/" + "0" * 64
                raw = json.dumps(docker).encode()
                member.size = len(raw)
                target.addfile(member, io.BytesIO(raw))
            else:
                target.addfile(member, data)
    (tmp_path / "changed.tar.sigstore.json").write_bytes((tmp_path / "img.tar.sigstore.json").read_bytes())
    assert verify(f"oci-archive:{archive}", "--key", key).returncode == 0
    refused(verify(f"oci-archive:{changed}", "--key", key), "manifest.json names an image other than")
