"""``pixi-pack-ci image``: OCI images from a lockfile or a pack, checked with real tools (skopeo,
umoci, runc, Debian's docker-registry), reproducible, pushed, one line per bad input."""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import rattler
from harness import Project, assert_clean_error, run_cli
from image_support import (
    FaultyProxy,
    ImageChannel,
    TokenServer,
    docker_registry,
    image_json,
    need,
    podman_store,
    run_image,
)
from signing import Sigstore, github_env
from support import add_pypi_hashes, build_wheel, channel_records, write_lockfile

pytestmark = pytest.mark.posix


def install_plugin(site: Path, module: str, source: str) -> str:
    """A plugin installed as a distribution with an entry point in ``site``; the PYTHONPATH for it."""
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pixi_pack_ci]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(source)
    return os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)


def layer_names(layout: Path, digest: str) -> list[str]:
    with tarfile.open(layout / "blobs" / "sha256" / digest.split(":", 1)[1]) as tar:
        return tar.getnames()


def test_image_runs_with_activation_from_config(image_channel: ImageChannel, base_layout: Path, tmp_path: Path) -> None:
    """From pixi.lock onto a busybox base: skopeo reads the layout, umoci unpacks it, runc runs the
    entrypoint with the activation in the config (PATH first, CONDA_PREFIX, env_vars.d)."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0", "envvars")
    out = tmp_path / "img"
    proc = run_cli(
        "image", project, "--base", f"oci-layout:{base_layout}:1", "--output", f"oci-layout:{out}:v1",
        "--entrypoint", "greet", "--label", "org.example.team=data", "--annotation", "org.example.note=hi",
        "--workdir", "/app", check=True,
    )  # fmt: skip
    line = proc.stdout.decode().strip()
    digest = line.rsplit("@", 1)[1]
    assert line == f"oci-layout:{out}@{digest}"
    inspect = subprocess.run(["skopeo", "inspect", f"oci:{out}:v1"], check=True, capture_output=True, text=True)
    inspected = json.loads(inspect.stdout)
    assert inspected["Digest"] == digest
    assert inspected["Labels"] == {"org.example.team": "data"}
    assert len(inspected["Layers"]) >= 3  # busybox + package layers + top
    result = run_image(out, "v1", tmp_path)
    assert result.returncode == 0, result.stderr
    prefix = "/app/.pixi/envs/default"
    assert "hello from greeter" in result.stdout
    assert f"CONDA_PREFIX={prefix}\n" in result.stdout
    assert "FOO=bar\n" in result.stdout
    assert f"PATH={prefix}/bin:/usr/local/sbin:" in result.stdout
    assert "libdata 1.0" in result.stdout
    manifest = json.loads((out / "blobs/sha256" / digest.split(":")[1]).read_text())
    assert manifest["annotations"]["org.example.note"] == "hi"
    base_digest = json.loads((base_layout / "index.json").read_text())["manifests"][0]["digest"]
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == base_digest


def test_activate_d_scripts_run_through_the_entrypoint(
    image_channel: ImageChannel, base_layout: Path, tmp_path: Path
) -> None:
    """A package with activate.d scripts: --activation auto writes an entrypoint script that
    activates, then execs the command; PATH carries the prefix once."""
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0", "activator")
    out = tmp_path / "img"
    run_cli("image", project, "--base", f"oci-layout:{base_layout}:1", "--output", f"oci-layout:{out}",
            "--cmd", "greet", "-q", check=True)  # fmt: skip
    result = run_image(out, "latest", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HELLO_DATA=/app/.pixi/envs/default/share/hello" in result.stdout
    path_line = next(line for line in result.stdout.splitlines() if line.startswith("PATH="))
    assert path_line.count("/app/.pixi/envs/default/bin") == 1, path_line


def test_same_lockfile_same_digests(image_channel: ImageChannel, tmp_path: Path) -> None:
    """Three builds: A cold with cache X (umask 022, its own working and temporary folders), B cold
    with another cache Y (umask 077, other folders, the project copied to another path), C warm
    from X (nothing installed). The same manifest and config digests, the same layer diff_ids and
    digests. Another prefix changes every environment layer; --compression none is as reproducible."""
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0", "envvars")
    elsewhere = tmp_path / "other" / "place" / "p"
    shutil.copytree(project, elsewhere)
    common = ("--base", "scratch", "--layers", "per-package")

    def build(
        source: Path, name: str, output: str, cache: str | Path, umask: int, cwd: Path, *extra: str
    ) -> dict[str, Any]:
        (tmp_path / f"tmp-{name}").mkdir()
        cwd.mkdir(parents=True, exist_ok=True)
        old = os.umask(umask)  # the subprocess creates its files under it
        try:
            result = image_json(source, *common, *extra, "--output", output, "--use-cache", cache,
                                env={"TMPDIR": str(tmp_path / f"tmp-{name}")}, cwd=cwd)  # fmt: skip
        finally:
            os.umask(old)
        return result

    # X named relative to A's working folder, absolute for C.
    a = build(project, "a", f"oci-layout:{tmp_path / 'a'}", "../cache-x", 0o022, tmp_path / "cwd-a")
    b = build(elsewhere, "b", f"oci-archive:{tmp_path / 'b.tar'}", tmp_path / "cache-y", 0o077, tmp_path / "cwd-b")
    c = build(project, "c", f"oci-layout:{tmp_path / 'c'}", tmp_path / "cache-x", 0o022, tmp_path / "cwd-c")
    assert [r["images"][0]["installed"] for r in (a, b, c)] == [True, True, False]
    assert not any(x["cached"] for x in b["images"][0]["layers"])  # Y was empty: B wrote every layer
    with tarfile.open(tmp_path / "b.tar") as tar:
        tar.extractall(tmp_path / "b", filter="data")

    def facts(layout: Path, result: dict[str, Any]) -> tuple[str, str, list[str], list[str]]:
        config = json.loads((layout / "blobs/sha256" / result["images"][0]["config_digest"][7:]).read_bytes())
        digests = [x["digest"] for x in result["images"][0]["layers"]]
        return result["digest"], result["images"][0]["config_digest"], config["rootfs"]["diff_ids"], digests

    first = facts(tmp_path / "a", a)
    assert facts(tmp_path / "b", b) == first
    assert facts(tmp_path / "c", c) == first
    # No path of this machine anywhere in the image.
    for blob in (tmp_path / "a" / "blobs" / "sha256").iterdir():
        raw = blob.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        assert str(tmp_path).encode() not in data, blob.name
    moved = image_json(project, *common, "--prefix", "/opt/env", "--output", f"oci-layout:{tmp_path / 'moved'}")
    old_layers = set(first[3])
    assert not old_layers & {x["digest"] for x in moved["images"][0]["layers"]}
    # --compression none, under the same differences: the same manifest digest; its layers are
    # the very tars gzip compressed (digest = diff_id = the gzip image's diff_id), so the config
    # is the gzip image's too.
    none = ("--compression", "none")
    n1 = build(project, "n1", f"oci-layout:{tmp_path / 'n1'}", tmp_path / "cache-z", 0o022, tmp_path / "cwd-n1", *none)
    n2 = build(
        elsewhere, "n2", f"oci-layout:{tmp_path / 'n2'}", tmp_path / "cache-y", 0o077, tmp_path / "cwd-n2", *none
    )
    assert n2["images"][0]["installed"]  # the gzip build's environment record is not for none
    plain = facts(tmp_path / "n1", n1)
    assert facts(tmp_path / "n2", n2) == plain
    assert plain[3] == plain[2] == first[2]
    assert plain[1] == first[1] and plain[0] != first[0]
    assert all(x["contents"] for x in n1["images"][0]["layers"])
    single = image_json(project, "--base", "scratch", "--layers", "single", "--output", f"oci-layout:{tmp_path / 's'}")
    assert [x["contents"] for x in single["images"][0]["layers"]] == ["environment"]


def test_archive_is_read_as_oci_and_docker_archive(image_channel: ImageChannel, tmp_path: Path) -> None:
    """One tar: an OCI layout plus Docker's manifest.json (what docker load reads)."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    archive = tmp_path / "image.tar"
    result = image_json(project, "--base", "scratch", "--output", f"oci-archive:{archive}:v3")
    oci = subprocess.run(["skopeo", "inspect", f"oci-archive:{archive}:v3"], capture_output=True, text=True)
    assert oci.returncode == 0, oci.stderr
    assert json.loads(oci.stdout)["Digest"] == result["digest"]
    docker = subprocess.run(
        ["skopeo", "inspect", "--config", f"docker-archive:{archive}"], capture_output=True, text=True
    )
    assert docker.returncode == 0, docker.stderr
    assert "CONDA_PREFIX=/app/.pixi/envs/default" in json.loads(docker.stdout)["config"]["Env"]


def test_archive_loads_into_podman_and_runs(image_channel: ImageChannel, base_layout: Path, tmp_path: Path) -> None:
    """podman load (Debian's podman 4.3, in a store of its own) reads the archive as an OCI
    archive: the image ID is our config digest, its digest our manifest's, and podman run runs the
    entrypoint with the activation. With a bare tag podman names the image by the layout's
    org.opencontainers.image.ref.name as if it were a repository (localhost/v3:latest; a full name
    is taken as it is, next test). From an archive of two platforms it loads this machine's."""
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0", "envvars")
    archive = tmp_path / "image.tar"
    result = image_json(project, "--base", f"oci-layout:{base_layout}:1", "--entrypoint", "greet",
                        "--output", f"oci-archive:{archive}:v3")  # fmt: skip
    multi = image_channel.project(tmp_path / "m", "other", platforms=("linux-64", "linux-aarch64"))
    both = image_json(multi, "-p", "linux-64", "-p", "linux-aarch64", "--base", "scratch",
                      "--output", f"oci-archive:{tmp_path / 'multi.tar'}:m1")  # fmt: skip
    with podman_store() as podman:
        loaded = podman("load", "-i", archive)
        assert loaded.returncode == 0, loaded.stderr
        assert "Loaded image: localhost/v3:latest" in loaded.stdout, loaded.stdout
        (image,) = json.loads(podman("image", "inspect", "localhost/v3:latest").stdout)
        assert image["Id"] == result["images"][0]["config_digest"].split(":")[1]
        assert image["Digest"] == result["digest"]
        assert image["RepoTags"] == ["localhost/v3:latest"]
        ran = podman("run", "--rm", "--network", "none", "localhost/v3:latest")
        assert ran.returncode == 0, ran.stderr
        assert "hello from greeter" in ran.stdout and "libdata 1.0" in ran.stdout
        assert "CONDA_PREFIX=/app/.pixi/envs/default\n" in ran.stdout and "FOO=bar\n" in ran.stdout
        loaded = podman("load", "-i", tmp_path / "multi.tar")
        assert loaded.returncode == 0, loaded.stderr
        (image,) = json.loads(podman("image", "inspect", "localhost/m1:latest").stdout)
        here = {"x86_64": "linux-64", "aarch64": "linux-aarch64"}[platform.machine()]
        (wanted,) = [i for i in both["images"] if i["platform"] == here]
        assert image["Id"] == wanted["config_digest"].split(":")[1]


def test_a_named_archive_loads_under_its_name(image_channel: ImageChannel, tmp_path: Path) -> None:
    """oci-archive:FILE.tar:NAME names the image where each loader looks, as docker save does:
    index.json's io.containerd.image.name (the full name: podman load, containerd) and
    org.opencontainers.image.ref.name (the tag: skopeo's oci-archive:FILE:TAG), manifest.json's
    RepoTags (Docker's classic store, the short form for Docker Hub). No name reaches a manifest
    or config: every digest and the blobs are those of the unnamed archive."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    plain = image_json(project, "--base", "scratch", "--output", f"oci-archive:{tmp_path / 'plain.tar'}")

    def members(archive: Path) -> dict[str, bytes]:
        with tarfile.open(archive) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]

    plain_blobs = {k: v for k, v in members(tmp_path / "plain.tar").items() if k.startswith("blobs/")}
    names = {
        "ghcr.io/acme/app:1.2": ("ghcr.io/acme/app:1.2", "ghcr.io/acme/app:1.2"),
        "registry.example:5000/acme/app:1": (
            "registry.example:5000/acme/app:1", "registry.example:5000/acme/app:1"
        ),
        "docker.io/acme/app:2": ("docker.io/acme/app:2", "acme/app:2"),
        "index.docker.io/ubuntu-like": ("docker.io/library/ubuntu-like:latest", "ubuntu-like:latest"),
    }  # fmt: skip
    for i, (name, (full, familiar)) in enumerate(names.items()):
        archive = tmp_path / f"named{i}.tar"
        named = image_json(project, "--base", "scratch", "--output", f"oci-archive:{archive}:{name}",
                           "--output", f"oci-layout:{tmp_path / f'layout{i}'}:{name}")  # fmt: skip
        assert named["digest"] == plain["digest"], name
        assert named["images"][0]["config_digest"] == plain["images"][0]["config_digest"], name
        tag = full.rsplit(":", 1)[1]
        assert named["outputs"][0] == {"kind": "oci-archive", "path": str(archive), "tag": tag, "name": full}
        files = members(archive)
        assert {k: v for k, v in files.items() if k.startswith("blobs/")} == plain_blobs, name
        (entry,) = json.loads(files["index.json"])["manifests"]
        assert entry["annotations"] == {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": tag}
        assert json.loads(files["manifest.json"])[0]["RepoTags"] == [familiar]
        layout_index = json.loads((tmp_path / f"layout{i}" / "index.json").read_bytes())
        assert layout_index["manifests"][0]["annotations"] == entry["annotations"]
        # skopeo's docker-archive transport (Docker's manifest.json) finds the image by its RepoTags
        # name, and lists it; its oci-archive transport finds it by the tag.
        tags = subprocess.run(["skopeo", "list-tags", f"docker-archive:{archive}"], capture_output=True, text=True)
        assert tags.returncode == 0, tags.stderr
        assert json.loads(tags.stdout)["Tags"] == [familiar], name
        docker = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}:{familiar}"],
                                capture_output=True, text=True)  # fmt: skip
        assert docker.returncode == 0, docker.stderr
        assert json.loads(docker.stdout)["Name"] == full.rsplit(":", 1)[0]
        oci = subprocess.run(["skopeo", "inspect", f"oci-archive:{archive}:{tag}"], capture_output=True, text=True)
        assert oci.returncode == 0, oci.stderr
        assert json.loads(oci.stdout)["Digest"] == plain["digest"]


def test_podman_loads_a_named_archive_under_that_name(image_channel: ImageChannel, tmp_path: Path) -> None:
    """podman load gives the image exactly the archive's name (index.json's
    io.containerd.image.name, as for an archive of docker save), its ID our config digest; from an
    archive of two platforms, this machine's image, under the same name."""
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    one = image_json(project, "--base", "scratch",
                     "--output", f"oci-archive:{tmp_path / 'one.tar'}:registry.example:5000/acme/app:1")  # fmt: skip
    multi = image_channel.project(tmp_path / "m", "other", platforms=("linux-64", "linux-aarch64"))
    both = image_json(multi, "-p", "linux-64", "-p", "linux-aarch64", "--base", "scratch",
                      "--output", f"oci-archive:{tmp_path / 'multi.tar'}:ghcr.io/acme/multi:2.0")  # fmt: skip
    with tarfile.open(tmp_path / "multi.tar") as tar:
        entries = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert [e["RepoTags"] for e in entries] == [["ghcr.io/acme/multi:2.0"], None]  # the first -p's image only
    with podman_store() as podman:
        loaded = podman("load", "-i", tmp_path / "one.tar")
        assert loaded.returncode == 0, loaded.stderr
        assert "Loaded image: registry.example:5000/acme/app:1" in loaded.stdout, loaded.stdout
        (image,) = json.loads(podman("images", "--format", "json").stdout)
        assert image["Names"] == ["registry.example:5000/acme/app:1"]
        (image,) = json.loads(podman("image", "inspect", "registry.example:5000/acme/app:1").stdout)
        assert image["RepoTags"] == ["registry.example:5000/acme/app:1"]
        assert image["Id"] == one["images"][0]["config_digest"].split(":")[1]
        assert image["Digest"] == one["digest"]
        loaded = podman("load", "-i", tmp_path / "multi.tar")
        assert loaded.returncode == 0, loaded.stderr
        (image,) = json.loads(podman("image", "inspect", "ghcr.io/acme/multi:2.0").stdout)
        assert image["RepoTags"] == ["ghcr.io/acme/multi:2.0"]
        here = {"x86_64": "linux-64", "aarch64": "linux-aarch64"}[platform.machine()]
        (wanted,) = [i for i in both["images"] if i["platform"] == here]
        assert image["Id"] == wanted["config_digest"].split(":")[1]


def test_output_names_parse_as_documented() -> None:
    """NAME is what follows the first ':' after the path that is not a drive letter's; a NAME
    without '/' is a tag, as before; Docker's short forms are written as docker save does."""
    from pixi_pack_ci.core.image.errors import ImageUsageError
    from pixi_pack_ci.core.image.refs import parse_output

    def parsed(text: str) -> tuple[str, str, str | None, str | None]:
        out = parse_output(text)
        return out.path.name, out.tag, str(out.name) if out.name else None, out.name.familiar if out.name else None

    assert parsed("oci-archive:app.tar") == ("app.tar", "latest", None, None)
    assert parsed("oci-archive:app.tar:v3") == ("app.tar", "v3", None, None)
    assert parsed("oci-archive:out/app.tar:ghcr.io/acme/app:1.2") == (
        "app.tar", "1.2", "ghcr.io/acme/app:1.2", "ghcr.io/acme/app:1.2"
    )  # fmt: skip
    assert parsed("oci-archive:app.tar:registry.example:5000/acme/app") == (
        "app.tar", "latest", "registry.example:5000/acme/app:latest", "registry.example:5000/acme/app:latest"
    )  # fmt: skip
    assert parsed("oci-layout:out:docker.io/library/ubuntu:24.04")[2:] == (
        "docker.io/library/ubuntu:24.04", "ubuntu:24.04"
    )  # fmt: skip
    assert parsed("oci-layout:out:docker.io/acme/sub/app:1")[3] == "acme/sub/app:1"
    assert parsed("oci-layout:out:docker.io/library/a/b:1")[3] == "library/a/b:1"
    assert parsed("oci-archive:app.tar:[::1]:5000/app:1")[2] == "[::1]:5000/app:1"
    windows = parse_output("oci-archive:C:\\out\\app.tar:ghcr.io/acme/app:1")
    assert str(windows.path).endswith("out\\app.tar") and str(windows.name) == "ghcr.io/acme/app:1"
    assert parse_output("oci-archive:C:/out/app.tar:v1").tag == "v1"
    for text, needle in [
        ("oci-archive:app.tar:acme/app:1", "name the registry, as in ghcr.io/acme/app:1 or docker.io/acme/app:1"),
        ("oci-archive:app.tar:app:1", "is neither a tag"),
        ("oci-archive:app.tar:ghcr.io/Acme/app:1", "invalid repository name"),
        ("oci-archive:app.tar:ghcr.io/acme/app:bad/tag", "invalid"),
        ("oci-archive:app.tar:ghcr.io/acme/app@sha256:" + "0" * 64, "the digest is the image's own"),
        ("oci-archive:app.tar:gh_cr.io/acme/app:1", "invalid registry"),
        ("oci-archive:app.tar:ghcr.io/" + "a" * 250 + ":1", "longer than 255"),
    ]:
        with pytest.raises(ImageUsageError) as caught:
            parse_output(text)
        assert needle in str(caught.value), (text, caught.value)
        assert "\n" not in str(caught.value)


def test_from_pack_and_zstd(image_channel: ImageChannel, base_layout: Path, tmp_path: Path) -> None:
    """--from-pack needs no package downloads; zstd layers carry their media type."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    run_cli("pack", project, "-p", "linux-64", "-o", tmp_path / "env.tar", "-q", check=True)
    image_channel.server.requests.clear()
    out = tmp_path / "img"
    image_json("--from-pack", tmp_path / "env.tar", "--base", f"oci-layout:{base_layout}:1",
                        "--output", f"oci-layout:{out}", "--entrypoint", "greet")  # fmt: skip
    assert not image_channel.server.requests
    ran = run_image(out, "latest", tmp_path)
    assert ran.returncode == 0 and "hello from greeter" in ran.stdout, ran.stderr
    # A pack folder gives the very same image.
    run_cli("pack", project, "-p", "linux-64", "--directory-only", "-o", tmp_path / "env-dir", "-q", check=True)
    folder = image_json("--from-pack", tmp_path / "env-dir", "--base", f"oci-layout:{base_layout}:1",
                        "--output", f"oci-layout:{tmp_path / 'img-dir'}", "--entrypoint", "greet")  # fmt: skip
    assert folder["digest"] == json.loads((out / "index.json").read_text())["manifests"][0]["digest"]
    # With --use-cache, building from the pack again installs nothing (the pack's own paths in this
    # run's temporary folder are not part of the environment's key) and gives the same image.
    cached = [
        image_json("--from-pack", tmp_path / "env-dir", "--base", f"oci-layout:{base_layout}:1", "--use-cache",
                   tmp_path / "cache", "--output", f"oci-layout:{tmp_path / f'img-{i}'}", "--entrypoint", "greet")
        for i in (1, 2)
    ]  # fmt: skip
    assert [c["images"][0]["installed"] for c in cached] == [True, False]
    assert {c["digest"] for c in cached} == {folder["digest"]}
    pytest.importorskip("zstandard")
    z = image_json("--from-pack", tmp_path / "env.tar", "--base", "scratch", "--compression", "zstd",
                   "--output", f"oci-layout:{tmp_path / 'z'}")  # fmt: skip
    manifest = json.loads((tmp_path / "z/blobs/sha256" / z["digest"].split(":")[1]).read_text())
    assert {x["mediaType"] for x in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}


def test_several_platforms_give_an_index(image_channel: ImageChannel, tmp_path: Path) -> None:
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "other", platforms=("linux-64", "linux-aarch64"))
    out = tmp_path / "img"
    result = image_json(project, "-p", "linux-64", "-p", "linux-aarch64", "--base", "scratch",
                        "--output", f"oci-layout:{out}")  # fmt: skip
    index = json.loads((out / "blobs/sha256" / result["digest"].split(":")[1]).read_text())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = [m["platform"] for m in index["manifests"]]
    assert platforms == [{"architecture": "amd64", "os": "linux"},
                         {"architecture": "arm64", "os": "linux", "variant": "v8"}]  # fmt: skip
    arm = subprocess.run(["skopeo", "--override-arch", "arm64", "inspect", f"oci:{out}:latest"],
                         capture_output=True, text=True)  # fmt: skip
    assert arm.returncode == 0, arm.stderr
    assert json.loads(arm.stdout)["Architecture"] == "arm64"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("-p", "win-64", "--base", "scratch"), "images are Linux only"),
        (("-p", "osx-arm64", "--base", "scratch"), "images are Linux only"),
        (("--base", "ubuntu:24.04"), "name the registry"),
        (("--base", "scratch", "--push", "127.0.0.1:1/Bad Name"), "invalid repository name"),
        ((), "name a base"),
        (("--base", "scratch", "--output", "tarball:x"), "unknown output"),
        (("--base", "scratch", "--compression", "brotli"), "unknown compression"),
        (("--base", "scratch", "--layers", "per-package", "--max-layers", "2"), "needs"),
        (("--base", "oci-layout:/nonexistent/layout"), "not an OCI layout"),
        (("--base", "scratch", "--prefix", "relative/env"), "--prefix"),
        (("--base", "scratch", "--activation", "script"), "needs a shell"),
        (("--base", "scratch", "--add", "/nonexistent/app:/srv/app"), "does not exist"),
        (("--base", "scratch", "--add", "relative"), "SRC:DEST"),
        (("--base", "scratch", "--push", "127.0.0.1:9/a/b", "--registry-username", "u"), "go together"),
        (("--base", "scratch", "--output", "oci-layout:{tmp}/file.txt"), "is not a folder"),
        (("--base", "scratch", "--output", "oci-archive:{tmp}/img:acme/app:1"), "name the registry"),
        (("--base", "scratch", "--output", "oci-archive:{tmp}/img:ghcr.io/Acme/app:1"), "invalid repository name"),
        (("--base", "scratch", "--output", "oci-layout:{tmp}/img:app:1"), "neither a tag"),
    ],
)
def test_bad_input_is_one_line_and_no_output(
    project: Project, tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    out = tmp_path / "img"
    (tmp_path / "file.txt").write_text("not a layout\n")
    args = tuple(a.replace("{tmp}", str(tmp_path)) for a in args)
    extra = () if any(a == "--output" for a in args) else ("--output", f"oci-layout:{out}")
    proc = run_cli("image", project.dir, *args, *extra)
    line = assert_clean_error(proc)
    assert needle in line, line
    assert not out.exists()
    assert not list(tmp_path.glob(".img.*"))


def test_push_uploads_only_missing_blobs(image_channel: ImageChannel, base_layout: Path, tmp_path: Path) -> None:
    """Push to a real registry: skopeo reads it back by tag with the same digest; pushing again
    uploads nothing; one changed package uploads exactly one environment layer (and the config)."""
    need("skopeo")
    with docker_registry(tmp_path / "registry") as registry:
        ref = f"{registry.host}/acme/app"
        common = ("--base", f"oci-layout:{base_layout}:1", "--layers", "per-package", "--entrypoint", "greet")
        p1 = image_channel.project(tmp_path / "p1", "greeter", "libdata=1.0", "envvars")
        first = image_json(p1, *common, "--push", f"{ref}:v1")
        assert first["pushed"][0]["reference"] == f"{ref}@{first['digest']}"
        layer_count = len(first["images"][0]["layers"])
        assert len(registry.uploads()) == layer_count + 1  # every layer and the config
        inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}:v1"],
                                   capture_output=True, text=True, check=True)  # fmt: skip
        assert json.loads(inspected.stdout)["Digest"] == first["digest"]
        # The manifest goes last, once, by its tag: after every blob (a tag never names missing blobs).
        log = registry.log.read_text().splitlines()
        tag_put = next(i for i, line in enumerate(log) if '"PUT /v2/acme/app/manifests/v1 ' in line)
        assert not [line for line in log if f'"PUT /v2/acme/app/manifests/{first["digest"]} ' in line]
        last_blob = max(i for i, line in enumerate(log) if "/blobs/uploads/" in line)
        assert last_blob < tag_put
        again = image_json(p1, *common, "--push", f"{ref}:v1")
        assert again["digest"] == first["digest"]
        assert again["pushed"][0]["blobs"] == {"present": layer_count + 1}
        assert len(registry.uploads()) == layer_count + 1
        p2 = image_channel.project(tmp_path / "p2", "greeter", "libdata=1.1", "envvars")
        before = len(registry.uploads())
        second = image_json(p2, *common, "--push", f"{ref}:v2")
        assert second["pushed"][0]["blobs"] == {"present": layer_count - 1, "uploaded": 2}
        assert len(registry.uploads()) == before + 2
        new = {x["digest"] for x in second["images"][0]["layers"]} - {x["digest"] for x in first["images"][0]["layers"]}
        assert [x["contents"] for x in second["images"][0]["layers"] if x["digest"] in new] == ["libdata"]
        # A base on the same registry: resolved to its digest, its layer mounted, never downloaded.
        base_ref = f"{registry.host}/library/busybox:1"
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{base_layout}:1", f"docker://{base_ref}"],
                       capture_output=True, check=True)  # fmt: skip
        on_base = image_json(
            p1, "--base", base_ref, "--entrypoint", "greet", "--push", f"{registry.host}/acme/other:v1"
        )
        assert on_base["pushed"][0]["blobs"]["mounted"] == 1
        manifest = json.loads(subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/acme/other:v1"],
            capture_output=True, check=True, text=True).stdout)  # fmt: skip
        assert manifest["annotations"]["org.opencontainers.image.base.name"] == base_ref
        assert manifest["annotations"]["org.opencontainers.image.base.digest"].startswith("sha256:")
        copied = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}:v2",
                                 f"oci:{tmp_path / 'pulled'}:v2"], capture_output=True, text=True)  # fmt: skip
        assert copied.returncode == 0, copied.stderr
        ran = run_image(tmp_path / "pulled", "v2", tmp_path)
        assert "libdata 1.1" in ran.stdout, ran.stderr


def test_push_failure_leaves_no_tag(image_channel: ImageChannel, tmp_path: Path) -> None:
    """A registry that refuses: one line; a registry that is not there: one line after retries."""
    project = image_channel.project(tmp_path / "p", "other")
    proc = run_cli("image", project, "--base", "scratch", "--push", "127.0.0.1:9/acme/app:v1",
                   env={"PIXI_PACK_CI_DOWNLOAD_ATTEMPTS": "1"})  # fmt: skip
    assert "127.0.0.1:9" in assert_clean_error(proc)


def test_plain_http_only_for_this_machine() -> None:
    from pixi_pack_ci.core.image.refs import parse_reference

    assert parse_reference("127.0.0.1:5000/a/b:1").api == "http://127.0.0.1:5000"
    assert parse_reference("localhost:5000/a").api == "http://localhost:5000"
    assert parse_reference("[::1]:5000/a").api == "http://[::1]:5000"
    assert parse_reference("ghcr.io/acme/app").api == "https://ghcr.io"
    assert parse_reference("10.0.0.1:5000/a").api == "https://10.0.0.1:5000"
    assert parse_reference("docker.io/ubuntu:24.04").repository == "library/ubuntu"


def test_push_with_token_auth(image_channel: ImageChannel, tmp_path: Path) -> None:
    """A registry behind a token service (as GHCR, GitLab): Bearer tokens from the challenge, with
    the credentials from the environment or Docker's config.json; wrong ones: one line, no tag."""
    need("skopeo")
    tokens = TokenServer(tmp_path / "tokens", "ci-user", "s3cret-pass")
    try:
        with docker_registry(tmp_path / "registry", auth=tokens.auth_section()) as registry:
            project = image_channel.project(tmp_path / "p", "other")
            ref = f"{registry.host}/acme/app"
            env = {"PIXI_PACK_CI_REGISTRY_USERNAME": "ci-user", "PIXI_PACK_CI_REGISTRY_PASSWORD": "s3cret-pass"}
            pushed = run_cli("image", project, "--base", "scratch", "--push", f"{ref}:v1", env=env, check=True)
            assert pushed.stdout.decode().startswith(f"{ref}@sha256:")
            assert any("scope=repository%3Aacme%2Fapp%3Apull%2Cpush" in r for r in tokens.requests)
            docker = tmp_path / "docker"
            docker.mkdir()
            auth = base64.b64encode(b"ci-user:s3cret-pass").decode()
            (docker / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
            again = image_json(project, "--base", "scratch", "--push", f"{ref}:v2", env={"DOCKER_CONFIG": str(docker)})
            assert again["pushed"][0]["blobs"] == {"present": 3}  # two layers and the config
            # A CI plugin answering for its registry (as the GitHub plugin could for ghcr.io).
            site = install_plugin(tmp_path / "site", "ci_registry", (
                "from pixi_pack_ci.core import hookimpl\n\n@hookimpl\n"
                "def pixi_pack_ci_registry_credentials(registry):\n"
                f"    return ('ci-user', 's3cret-pass') if registry == {registry.host!r} else None\n"
            ))  # fmt: skip
            by_plugin = image_json(project, "--base", "scratch", "--label", "p=1", "--push", f"{ref}:v4",
                                   env={"PYTHONPATH": site, "DOCKER_CONFIG": str(tmp_path / "none")})  # fmt: skip
            assert by_plugin["pushed"][0]["blobs"]["uploaded"] == 1  # the new config
            # --push twice: both repositories get the image, and a line each.
            flags = run_cli("image", project, "--base", "scratch", "--label", "f=1", "--push", f"{ref}:v5",
                            "--push", f"{registry.host}/acme/mirror:v1", "--registry-username", "ci-user",
                            "--registry-password-stdin", input=b"s3cret-pass\n",
                            env={"DOCKER_CONFIG": str(tmp_path / "none")}, check=True)  # fmt: skip
            lines = flags.stdout.decode().splitlines()
            digest = lines[0].rsplit("@", 1)[1]
            assert lines == [f"{ref}@{digest}", f"{registry.host}/acme/mirror@{digest}"], lines
            mirror = subprocess.run(
                ["skopeo", "inspect", "--tls-verify=false", "--creds", "ci-user:s3cret-pass",
                 f"docker://{registry.host}/acme/mirror:v1"], capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert json.loads(mirror.stdout)["Digest"] == digest
            wrong = {"PIXI_PACK_CI_REGISTRY_USERNAME": "ci-user", "PIXI_PACK_CI_REGISTRY_PASSWORD": "wrong-pass"}
            refused = run_cli("image", project, "--base", "scratch", "--push", f"{ref}:v3", "--cmd", "x", env=wrong)
            line = assert_clean_error(refused)
            assert "refused" in line and "wrong-pass" not in line
            tags = subprocess.run(
                ["skopeo", "list-tags", "--tls-verify=false", "--creds", "ci-user:s3cret-pass", f"docker://{ref}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert sorted(json.loads(tags.stdout)["Tags"]) == ["v1", "v2", "v4", "v5"]  # no v3
    finally:
        tokens.stop()


def test_signed_with_a_key_verifies_and_is_attached(image_channel: ImageChannel, tmp_path: Path) -> None:
    """--sign-key: SLSA v1 for the image digest, beside the layout and as a referrer in the
    registry (the sha256-<hex> fallback tag: distribution 2.8 has no referrers API); cosign finds
    the referrer itself and accepts the pushed image, by tag and by digest; pixi-pack-ci verify and
    cosign accept the image's manifest file with the bundle. Another image is refused: re-tagged
    v1 (it has no bundle), with our referrer listed as its own (the statement names our digest),
    its manifest file with our bundle."""
    need("skopeo")
    from verifier_tools import debian_tool, run

    run_cli("keygen", "--output-prefix", tmp_path / "site", "--no-passphrase", check=True)
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    out = tmp_path / "img"
    # cosign < 3.0.4 goes to TUF (online) without a trusted root even for keys; any one will do.
    root = tmp_path / "trusted_root.json"
    root.write_text('{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}')
    with_key = ["--type", "slsaprovenance1", "--key", str(tmp_path / "site.pub"), "--insecure-ignore-tlog",
                "--trusted-root", str(root)]  # fmt: skip
    with docker_registry(tmp_path / "registry") as registry:
        ref = f"{registry.host}/acme/app"
        result = image_json(project, "--base", "scratch", "--output", f"oci-layout:{out}", "--push", f"{ref}:v1",
                            "--sign-key", tmp_path / "site.key")  # fmt: skip
        digest = result["digest"]
        (attestation,) = result["attestation"]
        assert attestation["subjects"] == [ref] and attestation["digest"] == digest
        bundle = tmp_path / "img.sigstore.json"
        assert attestation["bundle_paths"] == [str(bundle)]
        fallback = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}:{digest.replace(':', '-')}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        (entry,) = json.loads(fallback.stdout)["manifests"]
        assert entry["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        assert attestation["referrers"] == [f"{ref}@{entry['digest']}"]
        referrer = json.loads(subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}@{entry['digest']}"],
            capture_output=True, text=True, check=True).stdout)  # fmt: skip
        assert referrer["subject"]["digest"] == digest
        layer = referrer["layers"][0]["digest"]
        with urllib.request.urlopen(f"http://{registry.host}/v2/acme/app/blobs/{layer}") as response:
            assert response.read() == bundle.read_bytes()
        # cosign reads the image from the registry (plain http: a loopback host), finds the bundle
        # under the fallback tag and checks it against the digest it resolved. cosign 2.x looks
        # for bundles only with --new-bundle-format (3.0's default), else for legacy .att tags.
        in_registry = [debian_tool("cosign"), "verify-attestation", "--new-bundle-format", *with_key]
        for image in (f"{ref}:v1", f"{ref}@{digest}"):
            checked = run([*in_registry, image])
            assert checked.accepted, checked.describe()
        other = image_json(project, "--base", "scratch", "--label", "x=y", "--push", f"{ref}:v1",
                           "--output", f"oci-layout:{tmp_path / 'other'}")  # fmt: skip
        retagged = run([*in_registry, f"{ref}:v1"])
        assert not retagged.accepted and "no valid bundles" in retagged.output, retagged.describe()
        # Our bundle listed under the other image's fallback tag: found, and refused.
        request = urllib.request.Request(
            f"http://{registry.host}/v2/acme/app/manifests/{other['digest'].replace(':', '-')}",
            data=fallback.stdout.encode(), method="PUT",
            headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
        )  # fmt: skip
        urllib.request.urlopen(request).close()
        borrowed = run([*in_registry, f"{ref}@{other['digest']}"])
        assert not borrowed.accepted, borrowed.describe()
        assert "does not match any digest in statement" in borrowed.output, borrowed.describe()
    manifest = out / "blobs" / "sha256" / digest.split(":")[1]
    verified = run_cli("verify", manifest, "--bundle", bundle, "--key", tmp_path / "site.pub")
    assert verified.returncode == 0, verified.stderr.decode()
    cosign = [debian_tool("cosign"), "verify-blob-attestation", "--bundle", str(bundle), *with_key]
    accepted = subprocess.run([*cosign, str(manifest)], capture_output=True, text=True)
    assert accepted.returncode == 0, accepted.stderr
    other_manifest = tmp_path / "other" / "blobs" / "sha256" / other["digest"].split(":")[1]
    assert run_cli("verify", other_manifest, "--bundle", bundle, "--key", tmp_path / "site.pub").returncode != 0
    assert subprocess.run([*cosign, str(other_manifest)], capture_output=True).returncode != 0


def test_keyless_image_attestation_passes_gh_bundle_from_oci(
    image_channel: ImageChannel, tmp_path: Path, sigstore: Sigstore
) -> None:
    """--attest in a GitHub job (the loopback Sigstore): gh and cosign find the referrer in the
    registry and verify it for the repository; another repository, or another image, is refused,
    and so is everything by cosign without the loopback Sigstore's trusted root."""
    from signing import GITHUB_ISSUER, SAN
    from verifier_tools import clean_env, debian_tool, fulcio_roots_pem, run, venv_tool

    project = image_channel.project(tmp_path / "p", "other")
    with docker_registry(tmp_path / "registry") as registry:
        ref = f"{registry.host}/acme/app"
        result = image_json(project, "--base", "scratch", "--push", f"{ref}:v1", "--attest",
                            "--sigstore-trust-config", sigstore.trust_config, env=github_env(sigstore))  # fmt: skip
        assert result["attestation"][0]["keyless"] is True
        # Also stored through GitHub's attestations API (the loopback double), as packs' are.
        assert result["attestation"][0]["github_attestation"]["url"]
        stored = json.loads(base64.b64decode(sigstore.fake.uploads[-1]["bundle"]["dsseEnvelope"]["payload"]))
        assert stored["subject"][0]["digest"] == {"sha256": result["digest"].split(":")[1]}
        other = image_json(project, "--base", "scratch", "--label", "x=y", "--push", f"{ref}:v2")

        def gh(image: str, repository: str) -> subprocess.CompletedProcess[str]:
            command = [venv_tool("gh"), "attestation", "verify", f"oci://{image}", "--bundle-from-oci",
                       "--custom-trusted-root", str(sigstore.trusted_root_jsonl), "--repo", repository]  # fmt: skip
            env = clean_env({"GH_TOKEN": "unused-offline"})
            return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

        accepted = gh(f"{ref}:v1", "acme/pixi-app")
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        assert gh(f"{ref}:v1", "acme/other").returncode != 0
        assert gh(f"{ref}@{other['digest']}", "acme/pixi-app").returncode != 0

        # cosign 2.5.0 needs the Fulcio roots named in SIGSTORE_ROOT_FILE only to stay offline
        # (verifier_tools.fulcio_roots_pem); the bundle is checked against --trusted-root.
        roots = {"SIGSTORE_ROOT_FILE": str(fulcio_roots_pem(sigstore.trusted_root, tmp_path / "fulcio.pem"))}
        empty_root = tmp_path / "empty_root.json"
        empty_root.write_text('{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}')

        def cosign(image: str, repository: str, trusted_root: Path = sigstore.trusted_root) -> Any:
            command = [debian_tool("cosign"), "verify-attestation", "--new-bundle-format", "--type", "slsaprovenance1",
                       "--trusted-root", str(trusted_root), "--certificate-identity", SAN,
                       "--certificate-oidc-issuer", GITHUB_ISSUER,
                       "--certificate-github-workflow-repository", repository, image]  # fmt: skip
            return run(command, env=roots)

        checked = cosign(f"{ref}:v1", "acme/pixi-app")
        assert checked.accepted, checked.describe()
        wrong_repository = cosign(f"{ref}:v1", "acme/other")
        assert not wrong_repository.accepted and "GithubWorkflowRepository" in wrong_repository.output
        unsigned = cosign(f"{ref}@{other['digest']}", "acme/pixi-app")
        assert not unsigned.accepted and "no valid bundles" in unsigned.output, unsigned.describe()
        untrusted = cosign(f"{ref}:v1", "acme/pixi-app", trusted_root=empty_root)
        assert not untrusted.accepted and "transparency log" in untrusted.output, untrusted.describe()


def test_push_retries_resets_and_5xx_and_fails_cleanly(image_channel: ImageChannel, tmp_path: Path) -> None:
    """A reset mid-upload and 5xx answers are retried (the same image arrives); a 404 or 403 is
    one line, and the tag was never written."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    with docker_registry(tmp_path / "registry") as registry:
        proxy = FaultyProxy(registry.host)
        try:
            proxy.faults = {
                "PUT /blobs/uploads/": ["reset", "503"],
                "PUT /manifests/": ["500"],
                "HEAD /blobs/": ["502"],
            }
            ref = f"{proxy.host}/acme/app"
            result = image_json(project, "--base", "scratch", "--push", f"{ref}:v1")
            assert not any(proxy.faults.values())  # every fault was served, and survived
            tag = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/acme/app:v1"],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            assert json.loads(tag.stdout)["Digest"] == result["digest"]
            # A proxy that refuses one big request (413): the blob goes in chunks (PATCH), same image.
            proxy.faults = {"PUT /blobs/uploads/": ["413"]}
            chunked = image_json(project, "--base", "scratch", "--label", "c=1", "--push", f"{ref}:chunked")
            assert any(r.startswith("PATCH /v2/acme/app/blobs/uploads/") for r in proxy.seen)
            pulled = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/acme/app:chunked"],
                                    capture_output=True, text=True, check=True)  # fmt: skip
            assert json.loads(pulled.stdout)["Digest"] == chunked["digest"]
            unknown = run_cli("image", project, "--base", f"{proxy.host}/library/nope:1", "--push", f"{ref}:v3")
            assert "refused to give the manifest library/nope:1: 404" in assert_clean_error(unknown)
            for status in ("404", "403"):
                proxy.faults = {"POST /blobs/uploads/": [status] * 20}
                failed = run_cli("image", project, "--base", "scratch", "--label", f"s={status}", "--push", f"{ref}:v2")
                line = assert_clean_error(failed)
                assert f"{proxy.host} refused to start an upload to acme/app: {status}" in line, line
                assert "PUT /v2/acme/app/manifests/v2" not in proxy.seen
        finally:
            proxy.stop()


def test_a_newer_package_leaves_the_other_layers_alone(image_channel: ImageChannel, tmp_path: Path) -> None:
    """Each package layer carries its own package's time, not the image's: adding a package built
    later than all others (the image's time moves) changes no other package's layer."""
    older = image_channel.project(tmp_path / "a", "greeter", "libdata=1.0")
    newer_dir = tmp_path / "b"
    newer_dir.mkdir()
    (newer_dir / "pixi.toml").write_text((older / "pixi.toml").read_text())
    records = image_channel.pick("greeter", "libdata=1.0", "other")
    records[-1].timestamp = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    write_lockfile(newer_dir / "pixi.lock", {"default": {"linux-64": records}}, image_channel.server.url)
    common = ("--base", "scratch", "--layers", "per-package")
    a = image_json(older, *common, "--output", f"oci-layout:{tmp_path / 'ia'}")["images"][0]["layers"]
    b = image_json(newer_dir, *common, "--output", f"oci-layout:{tmp_path / 'ib'}")["images"][0]["layers"]
    by_contents = {x["contents"]: x["digest"] for x in b}
    assert {x["contents"]: x["digest"] for x in a if x["contents"] in ("greeter", "libdata")} == {
        "greeter": by_contents["greeter"], "libdata": by_contents["libdata"],
    }  # fmt: skip
    config = json.loads((tmp_path / "ib" / "index.json").read_text())
    assert (
        config["manifests"][0]["digest"]
        != json.loads((tmp_path / "ia" / "index.json").read_text())["manifests"][0]["digest"]
    )


def test_a_plugin_can_change_the_layers(image_channel: ImageChannel, tmp_path: Path) -> None:
    """pixi_pack_ci_image_layers: a plugin merging every package layer into one; one that loses a
    path is refused in one line."""
    site = install_plugin(
        tmp_path / "site",
        "merge_layers",
        "import os\nfrom pixi_pack_ci.core import hookimpl\n\n"
        "@hookimpl\ndef pixi_pack_ci_image_layers(layers, platform, options):\n"
        "    if os.environ.get('LOSE_A_PATH'):\n        layers[0].paths.pop()\n        return\n"
        "    merged = [p for layer in layers[:-1] for p in layer.paths]\n"
        "    layers[:-1] = [type(layers[0])(sorted(merged), 'all packages', max(x.time for x in layers[:-1]))]\n",
    )
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0", "envvars")
    env = {"PYTHONPATH": site}
    result = image_json(project, "--base", "scratch", "--layers", "per-package", "--output",
                        f"oci-layout:{tmp_path / 'img'}", env=env)  # fmt: skip
    assert [x["contents"] for x in result["images"][0]["layers"]] == [
        "all packages", "environment files of no single package"
    ]  # fmt: skip
    lost = run_cli("image", project, "--base", "scratch", "--output", f"oci-layout:{tmp_path / 'x'}",
                   env={**env, "LOSE_A_PATH": "1"})  # fmt: skip
    assert "lost or repeated paths" in assert_clean_error(lost)


def test_add_puts_files_in_a_layer_of_their_own(image_channel: ImageChannel, base_layout: Path, tmp_path: Path) -> None:
    """--add SRC:DEST: a folder (links kept) and a single file, after the environment's layers;
    their times and modes come from the image, not this machine, so touching them changes nothing."""
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    app = tmp_path / "app"
    (app / "data").mkdir(parents=True)
    (app / "run.sh").write_text('#!/bin/sh\necho "app sees $(cat /srv/app/data/msg.txt)"\nexec greet\n')
    (app / "run.sh").chmod(0o775)
    (app / "data" / "msg.txt").write_text("hello app\n")
    os.symlink("data/msg.txt", app / "msg")
    (tmp_path / "settings.toml").write_text("debug = false\n")
    args = ("--base", f"oci-layout:{base_layout}:1", "--add", f"{app}:/srv/app",
            "--add", f"{tmp_path / 'settings.toml'}:/etc/app/", "--entrypoint", "/srv/app/run.sh")  # fmt: skip
    first = image_json(project, *args, "--output", f"oci-layout:{tmp_path / 'img'}")
    layers = first["images"][0]["layers"]
    assert [x["contents"] for x in layers[-2:]] == ["files at /srv/app", "files at /etc/app/settings.toml"]
    with tarfile.open(tmp_path / "img" / "blobs" / "sha256" / layers[-2]["digest"].split(":")[1]) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == [
        "srv",
        "srv/app",
        "srv/app/data",
        "srv/app/data/msg.txt",
        "srv/app/msg",
        "srv/app/run.sh",
    ]
    assert members["srv/app/msg"].issym() and members["srv/app/msg"].linkname == "data/msg.txt"
    assert members["srv/app/run.sh"].mode == 0o755 and members["srv/app/data/msg.txt"].mode == 0o644
    ran = run_image(tmp_path / "img", "latest", tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "app sees hello app" in ran.stdout and "hello from greeter" in ran.stdout
    os.utime(app / "run.sh", (1, 1))
    (app / "data" / "msg.txt").chmod(0o600)
    again = image_json(project, *args, "--output", f"oci-layout:{tmp_path / 'img2'}")
    assert again["digest"] == first["digest"]


def test_layer_cache_skips_unchanged_layers_and_trusts_only_its_own(
    image_channel: ImageChannel, tmp_path: Path
) -> None:
    """With --use-cache, a rebuild takes every package layer from the cache (the same bytes); one
    changed package writes one layer; a cache entry changed behind our back, or a record without
    this user's MAC, is written afresh."""
    common = ("--base", "scratch", "--layers", "per-package", "--use-cache", str(tmp_path / "cache"))
    p1 = image_channel.project(tmp_path / "p1", "greeter", "libdata=1.0", "envvars")
    first = image_json(p1, *common, "--output", f"oci-layout:{tmp_path / 'a'}")
    assert not any(x["cached"] for x in first["images"][0]["layers"])
    again = image_json(p1, *common, "--output", f"oci-layout:{tmp_path / 'b'}")
    assert again["digest"] == first["digest"]
    cached = {x["contents"]: x["cached"] for x in again["images"][0]["layers"]}
    # Unchanged: nothing installed, the top layer too from the cache (the environment's record).
    assert not again["images"][0]["installed"]
    assert cached == {
        "greeter": True,
        "libdata": True,
        "envvars": True,
        "environment files of no single package": True,
    }
    p2 = image_channel.project(tmp_path / "p2", "greeter", "libdata=1.1", "envvars")
    bumped = image_json(p2, *common, "--output", f"oci-layout:{tmp_path / 'c'}")
    assert [x["contents"] for x in bumped["images"][0]["layers"] if not x["cached"]] == [
        "libdata", "environment files of no single package"
    ]  # fmt: skip
    blobs = tmp_path / "cache" / "image-layers" / "blobs"
    for blob in blobs.iterdir():
        data = blob.read_bytes()
        blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # every cached layer damaged
    records = tmp_path / "cache" / "image-layers" / "records"
    tampered = image_json(p1, *common, "--output", f"oci-layout:{tmp_path / 'd'}")
    assert tampered["digest"] == first["digest"]
    assert not any(x["cached"] for x in tampered["images"][0]["layers"])
    environments = tmp_path / "cache" / "image-layers" / "environments"
    for record in [*records.iterdir(), *environments.iterdir()]:
        data = json.loads(record.read_text())
        record.write_text(json.dumps({**data, "mac": "0" * 64}))
    forged = image_json(p1, *common, "--output", f"oci-layout:{tmp_path / 'e'}")
    assert forged["digest"] == first["digest"]
    assert forged["images"][0]["installed"]
    assert not any(x["cached"] for x in forged["images"][0]["layers"])
    healed = image_json(p1, *common, "--output", f"oci-layout:{tmp_path / 'f'}")  # the entries written afresh
    assert healed["digest"] == first["digest"]
    assert not healed["images"][0]["installed"]
    assert all(x["cached"] for x in healed["images"][0]["layers"])


def test_unchanged_rebuild_installs_nothing_and_a_changed_input_reuses_no_stale_layer(
    image_channel: ImageChannel, base_layout: Path, tmp_path: Path
) -> None:
    """With --use-cache, an unchanged rebuild installs nothing (every environment layer, the top
    one too, comes from the layer cache's record of the environment) and gives the digests of a
    cold build. A changed input gives what a cold build with it gives: another prefix, activation
    or image time installs again (they change the top layer); --env changes only the config."""
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0", "envvars", "activator")
    common = ("--base", f"oci-layout:{base_layout}:1", "--layers", "per-package")
    cache = tmp_path / "cache"

    def build(name: str, *extra: str, warm: bool = True, env: dict[str, str] | None = None) -> dict[str, Any]:
        cached = ("--use-cache", str(cache)) if warm else ()
        return image_json(project, *common, *extra, *cached, "--output", f"oci-layout:{tmp_path / name}", env=env)

    first = build("first")
    assert first["images"][0]["installed"]
    again = build("again")
    assert not again["images"][0]["installed"]
    assert again["digest"] == first["digest"]
    assert again["images"][0]["config_digest"] == first["images"][0]["config_digest"]
    env_layers = [x for x in again["images"][0]["layers"] if x["contents"] != "base"]
    assert env_layers and all(x["cached"] for x in env_layers)
    assert build("cold", warm=False)["digest"] == first["digest"]
    top = first["images"][0]["layers"][-1]
    assert top["contents"] == "environment files of no single package"
    changes: list[tuple[tuple[str, ...], dict[str, str] | None, bool]] = [
        (("--prefix", "/opt/env"), None, True),
        (("--activation", "env"), None, True),
        ((), {"SOURCE_DATE_EPOCH": "1700000000"}, True),
        (("--env", "K=V"), None, False),
    ]
    for i, (extra, env, reinstalls) in enumerate(changes):
        warm, cold = build(f"warm{i}", *extra, env=env), build(f"cold{i}", *extra, warm=False, env=env)
        assert warm["digest"] == cold["digest"] != first["digest"], extra or env
        assert warm["images"][0]["installed"] is reinstalls, extra or env
        layers = warm["images"][0]["layers"]
        assert (layers[-1]["digest"] == top["digest"]) is not reinstalls, extra or env
        if reinstalls:
            assert not layers[-1]["cached"], extra or env
        assert build(f"again{i}", *extra, env=env)["digest"] == warm["digest"]  # and now from the cache
    config = json.loads((tmp_path / "warm3" / "blobs" / "sha256" / warm["images"][0]["config_digest"][7:]).read_bytes())
    assert "K=V" in config["config"]["Env"]


def test_a_cached_rebuild_asks_the_layering_plugins_again(image_channel: ImageChannel, tmp_path: Path) -> None:
    """An environment recalled from the layer cache still goes through pixi_pack_ci_image_layers,
    once per run: laid out as recorded, its layers are used; laid out otherwise, it is installed
    and written as a cold build would be."""
    calls = tmp_path / "calls"
    site = install_plugin(
        tmp_path / "site",
        "merge_layers",
        "import os\nfrom pixi_pack_ci.core import hookimpl\n\n"
        "@hookimpl\ndef pixi_pack_ci_image_layers(layers, platform, options):\n"
        f"    with open({str(calls)!r}, 'a') as out:\n        out.write('call\\n')\n"
        "    if not os.environ.get('MERGE'):\n        return\n"
        "    merged = [p for layer in layers[:-1] for p in layer.paths]\n"
        "    layers[:-1] = [type(layers[0])(sorted(merged), 'all packages', max(x.time for x in layers[:-1]))]\n",
    )
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0", "envvars")
    common = ("--base", "scratch", "--layers", "per-package")
    cache = ("--use-cache", str(tmp_path / "cache"))
    merge = {"PYTHONPATH": site, "MERGE": "1"}
    runs = [
        image_json(project, *common, *cache, "--output", f"oci-layout:{tmp_path / name}", env=env)
        for name, env in (("a", merge), ("b", merge), ("c", {"PYTHONPATH": site}))
    ]
    cold = image_json(project, *common, "--output", f"oci-layout:{tmp_path / 'd'}", env={"PYTHONPATH": site})
    assert [r["images"][0]["installed"] for r in runs] == [True, False, True]
    assert runs[0]["digest"] == runs[1]["digest"] != runs[2]["digest"] == cold["digest"]
    assert [x["contents"] for x in runs[1]["images"][0]["layers"]] == [
        "all packages", "environment files of no single package"
    ]  # fmt: skip
    assert calls.read_text().splitlines() == ["call"] * 4  # once per run


def test_base_from_another_registry(image_channel: ImageChannel, base_layout: Path, tmp_path: Path) -> None:
    """A base on one registry, the image pushed to another and written as a layout: the base's
    layer passes through once (checked against its digest) and the layout runs."""
    need("skopeo")
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    with docker_registry(tmp_path / "r1") as source, docker_registry(tmp_path / "r2") as target:
        base_ref = f"{source.host}/library/busybox:1"
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{base_layout}:1", f"docker://{base_ref}"],
                       capture_output=True, check=True)  # fmt: skip
        out = tmp_path / "img"
        result = image_json(project, "--base", base_ref, "--entrypoint", "greet", "--output", f"oci-layout:{out}",
                            "--push", f"{target.host}/acme/app:v1")  # fmt: skip
        assert result["pushed"][0]["blobs"].get("mounted", 0) == 0
        assert result["pushed"][0]["blobs"]["uploaded"] == len(result["images"][0]["layers"]) + 1
        ran = run_image(out, "latest", tmp_path)
        assert ran.returncode == 0 and "hello from greeter" in ran.stdout, ran.stderr


def test_a_multi_platform_base_gives_the_platform_s_image(image_channel: ImageChannel, tmp_path: Path) -> None:
    """A base whose layout holds an index: the image for each -p is built on that platform's."""
    multi = image_channel.project(tmp_path / "m", "other", platforms=("linux-64", "linux-aarch64"))
    base = image_json(multi, "-p", "linux-64", "-p", "linux-aarch64", "--base", "scratch",
                      "--output", f"oci-layout:{tmp_path / 'base'}:2")  # fmt: skip
    arm = next(i for i in base["images"] if i["platform"] == "linux-aarch64")
    project = image_channel.project(tmp_path / "p", "other", platforms=("linux-aarch64",))
    out = tmp_path / "img"
    image_json(project, "-p", "linux-aarch64", "--base", f"oci-layout:{tmp_path / 'base'}:2",
               "--output", f"oci-layout:{out}")  # fmt: skip
    entry = json.loads((out / "index.json").read_text())["manifests"][0]
    manifest = json.loads((out / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_text())
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == arm["digest"]
    assert [x["digest"] for x in manifest["layers"][: len(arm["layers"])]] == [x["digest"] for x in arm["layers"]]
    wrong = run_cli("image", image_channel.project(tmp_path / "q", "other"), "-p", "linux-64",
                    "--base", f"oci-layout:{out}", "--output", f"oci-layout:{tmp_path / 'y'}")  # fmt: skip
    assert "is for linux/arm64, not linux/amd64" in assert_clean_error(wrong)
    index_only = run_cli("image", image_channel.project(tmp_path / "r", "other", platforms=("linux-ppc64le",)),
                         "-p", "linux-ppc64le", "--base", f"oci-layout:{tmp_path / 'base'}:2",
                         "--output", f"oci-layout:{tmp_path / 'z'}")  # fmt: skip
    assert "has no image for linux/ppc64le" in assert_clean_error(index_only)


def test_linux_platforms_map_to_oci_platforms() -> None:
    from pixi_pack_ci.core.image.refs import oci_platform

    assert oci_platform("linux-64") == {"architecture": "amd64", "os": "linux"}
    assert oci_platform("linux-aarch64") == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert oci_platform("linux-ppc64le") == {"architecture": "ppc64le", "os": "linux"}
    assert oci_platform("linux-s390x") == {"architecture": "s390x", "os": "linux"}
    for other in ("win-64", "osx-arm64", "noarch"):
        with pytest.raises(Exception, match="images are Linux only"):
            oci_platform(other)


def test_wheels_get_their_own_layers_reproducibly(
    tmp_path: Path, image_channel: ImageChannel, python_channel: Path, demo_channel: Any
) -> None:
    """A locked wheel is a unit like a conda package: its RECORD's files (console script
    included) in its own layer, the same bytes on every build."""
    wheel = build_wheel(tmp_path / "wheels", "alpha-tool", "1.0", {"alpha_tool": "def main():\n    print('ok')\n"},
                        {"alpha-tool": "alpha_tool:main"})  # fmt: skip
    project = tmp_path / "project"
    project.mkdir()
    (project / "pixi.toml").write_text('[workspace]\nname = "w"\nchannels = []\nplatforms = []\n')
    shutil.copy(wheel, project / wheel.name)
    lock = rattler.LockFile([rattler.LockPlatform("linux-64")])
    lock.set_channels("default", [rattler.LockChannel(demo_channel.url)])
    for record in channel_records(python_channel, demo_channel.url + "py/")["linux-64"]:
        lock.add_conda_package("default", rattler.LockPlatform("linux-64"), record)
    lock.add_pypi_package("default", rattler.LockPlatform("linux-64"), "alpha-tool", "1.0", f"./{wheel.name}")
    lock.to_path(project / "pixi.lock")
    add_pypi_hashes(project / "pixi.lock", {f"./{wheel.name}": hashlib.sha256(wheel.read_bytes()).hexdigest()})
    common = ("--base", "scratch", "--layers", "per-package")
    first = image_json(project, *common, "--output", f"oci-layout:{tmp_path / 'a'}")
    second = image_json(project, *common, "--output", f"oci-layout:{tmp_path / 'b'}", env={"TMPDIR": str(tmp_path)})
    assert first["digest"] == second["digest"]
    layer = next(x for x in first["images"][0]["layers"] if x["contents"] == "pypi:alpha_tool")
    names = layer_names(tmp_path / "a", layer["digest"])
    prefix = "app/.pixi/envs/default"
    assert f"{prefix}/bin/alpha-tool" in names
    assert any(n.endswith("site-packages/alpha_tool.py") for n in names)
    assert any(n.endswith("alpha_tool-1.0.dist-info/RECORD") for n in names)


def test_challenges_are_parsed_as_quoted_strings() -> None:
    """distribution's scope holds a comma inside quotes (RFC 7235 quoted-string)."""
    from pixi_pack_ci.core.image.registry import parse_challenge

    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:acme/app:push,pull"'
    )
    assert parse_challenge(header) == (
        "bearer",
        {
            "realm": "https://auth.example/token",
            "service": "registry.example",
            "scope": "repository:acme/app:push,pull",
        },
    )
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    assert parse_challenge('Bearer realm="a\\"b",error=invalid_token') == (
        "bearer",
        {"realm": 'a"b', "error": "invalid_token"},
    )


def test_image_time_and_conda_meta(image_channel: ImageChannel, tmp_path: Path) -> None:
    """created is SOURCE_DATE_EPOCH, else the newest package's build time; conda-meta names the
    lockfile's URL and no folder of this machine."""
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    records = image_channel.pick("greeter", "libdata=1.0")
    records[0].timestamp = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)
    records[1].timestamp = newest = datetime.datetime(2025, 7, 1, 12, 30, tzinfo=datetime.UTC)
    write_lockfile(project / "pixi.lock", {"default": {"linux-64": records}}, image_channel.server.url)
    out = tmp_path / "img"
    plain = image_json(project, "--base", "scratch", "--layers", "per-package", "--output", f"oci-layout:{out}")
    config = json.loads((out / "blobs/sha256" / plain["images"][0]["config_digest"].split(":")[1]).read_text())
    assert config["created"] == newest.strftime("%Y-%m-%dT%H:%M:%SZ")
    layer = next(x for x in plain["images"][0]["layers"] if x["contents"] == "greeter")
    with tarfile.open(out / "blobs/sha256" / layer["digest"].split(":")[1]) as tar:
        meta_name = next(n for n in tar.getnames() if n.startswith("app/.pixi/envs/default/conda-meta/greeter-"))
        meta = json.loads(tar.extractfile(meta_name).read())  # type: ignore[union-attr]
    assert meta["url"] == f"{image_channel.server.url}linux-64/{meta['fn']}"
    assert "extracted_package_dir" not in meta and "package_tarball_full_path" not in meta
    assert "source" not in meta.get("link", {})
    dated = image_json(project, "--base", "scratch", "--output", f"oci-layout:{tmp_path / 'd'}",
                       env={"SOURCE_DATE_EPOCH": "1700000000"})  # fmt: skip
    config = json.loads((tmp_path / "d/blobs/sha256" / dated["images"][0]["config_digest"].split(":")[1]).read_text())
    assert config["created"] == "2023-11-14T22:13:20Z"
    bad = run_cli("image", project, "--base", "scratch", "--output", f"oci-layout:{tmp_path / 'x'}",
                  env={"SOURCE_DATE_EPOCH": "yesterday"})  # fmt: skip
    assert "SOURCE_DATE_EPOCH" in assert_clean_error(bad)


def test_config_fields_and_inject(image_channel: ImageChannel, tmp_path: Path) -> None:
    """--workdir, --user, --env, --cmd as a JSON array, --entrypoint dropping the base's command;
    --inject adds a package to the lockfile's environment, as for pack."""
    project = image_channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    extra = next((image_channel.path / "linux-64").glob("envvars-*.conda"))
    out = tmp_path / "img"
    result = image_json(project, "--base", "scratch", "--workdir", "/srv", "--user", "1000:1000", "--env", "A=B",
                        "--cmd", '["python", "-V"]', "-i", extra, "--output", f"oci-layout:{out}:cfg")  # fmt: skip
    config = json.loads((out / "blobs/sha256" / result["images"][0]["config_digest"].split(":")[1]).read_text())
    assert config["config"]["WorkingDir"] == "/srv" and config["config"]["User"] == "1000:1000"
    assert config["config"]["Cmd"] == ["python", "-V"] and "Entrypoint" not in config["config"]
    assert "A=B" in config["config"]["Env"] and "FOO=bar" in config["config"]["Env"]  # FOO: the injected package
    on_top = image_json(project, "--base", f"oci-layout:{out}:cfg", "--entrypoint", "greet",
                        "--output", f"oci-layout:{tmp_path / 'top'}")  # fmt: skip
    top = json.loads((tmp_path / "top/blobs/sha256" / on_top["images"][0]["config_digest"].split(":")[1]).read_text())
    assert top["config"]["Entrypoint"] == ["greet"] and "Cmd" not in top["config"]  # Docker's rule
    assert top["config"]["WorkingDir"] == "/srv"  # the base's, kept


def test_auto_layers_give_big_and_popular_packages_their_own() -> None:
    from pixi_pack_ci.core.image.layers import Unit, group

    units = [Unit("big", size=5 << 20), Unit("lib", size=10, popularity=9), Unit("a", size=10), Unit("b", size=20)]
    assert [[u.name for u in g] for g in group(units, "auto", 40)] == [["lib"], ["big"], ["b", "a"]]
    assert [[u.name for u in g] for g in group(units, "auto", 3)] == [["lib"], ["big", "b", "a"]]
    assert [[u.name for u in g] for g in group(units, "single", 40)] == [["big", "lib", "a", "b"]]
    assert len(group(units, "per-package", 5)) == 4


def test_github_step_outputs_and_summary_for_an_image(image_channel: ImageChannel, tmp_path: Path) -> None:
    # A plain `pixi-pack-ci image` step in a GitHub workflow gets outputs, as `pack` does.
    from signing import no_ci

    project = image_channel.project(tmp_path / "p", "greeter")
    outputs, summary = tmp_path / "outputs.txt", tmp_path / "summary.md"
    outputs.write_text("")
    env = {**no_ci(), "GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary)}
    result = image_json(project, "--base", "scratch", "--output", f"oci-layout:{tmp_path / 'img'}", env=env)
    lines = outputs.read_text().splitlines()
    # The runner's format: `name<<DELIMITER`, the value's lines, the delimiter (or `name=value`).
    values = {}
    for i, line in enumerate(lines):
        if "<<" in line:
            values[line.split("<<")[0]] = lines[i + 1]
        elif "=" in line:
            values[line.split("=")[0]] = line.split("=", 1)[1]
    assert values["image-digest"] == result["digest"] and result["digest"].startswith("sha256:")
    assert values["image-ref"] == "" and values["image-refs"] == ""  # nothing was pushed: no reference
    assert result["digest"] in summary.read_text() and "| image | digest | platforms |" in summary.read_text()
