"""What an image holds, read from its blobs rather than trusted through digest equality: the
layer limit with a base of many layers, the provenance's compressor, the tar and gzip bytes, no
trace of this machine or of a channel's credentials, and what activation does and does not run."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import assert_clean_error, run_cli
from image_support import image_specs, need
from support import ChannelServer, PackageSpec, build_channel
from test_image import ImageChannel, image_json

pytestmark = pytest.mark.posix

#: The documented ceiling of layers in an image, the base's included.
MAX_TOTAL_LAYERS = 100
#: Packages that each have one dependent (the hub): ``--layers auto`` gives each its own layer.
LEAVES = [f"leaf{i:02d}" for i in range(30)]


def content_specs() -> list[PackageSpec]:
    return [
        *image_specs(),
        *(PackageSpec(name) for name in LEAVES),
        PackageSpec("hub", depends=list(LEAVES)),
    ]


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageChannel]:
    base = tmp_path_factory.mktemp("content-channel")
    build_channel(base / "channel", content_specs(), base / "work")
    server = ChannelServer(base / "channel").start()
    yield ImageChannel(base / "channel", server)
    server.stop()


def blob(layout: Path, digest: str) -> bytes:
    """A blob of a layout, decompressed when it is gzip."""
    raw = (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def members(layout: Path, digest: str) -> list[tarfile.TarInfo]:
    with tarfile.open(layout / "blobs" / "sha256" / digest.split(":", 1)[1]) as tar:
        return tar.getmembers()


def layered_base(folder: Path, count: int) -> Path:
    """An OCI layout of ``count`` layers of one small file each, made by umoci from real files."""
    need("umoci")
    layout = folder / "layout"
    subprocess.run(["umoci", "init", "--layout", layout], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:1"], check=True)
    for i in range(count):
        source = folder / f"file{i:03d}.txt"
        source.write_text(f"base layer {i}\n")
        subprocess.run(["umoci", "insert", "--image", f"{layout}:1", source, f"/base/{source.name}"],
                       check=True, capture_output=True)  # fmt: skip
    return layout


def test_the_base_s_layers_count_toward_the_limit_of_100(channel: ImageChannel, tmp_path: Path) -> None:
    """An environment that takes more layers than a base of 80 leaves room for: --layers auto
    merges more, so the image has 100 layers and every file; --max-layers lower than the room is
    still obeyed; a record of the environment in the layer cache made on scratch is not reused
    for the base; per-package is refused in one line, as is a base with no room left."""
    need("skopeo")
    below = 80
    room = MAX_TOTAL_LAYERS - below
    base = layered_base(tmp_path / "base", below)
    project = channel.project(tmp_path / "p", "hub", *LEAVES)
    cache = ("--use-cache", str(tmp_path / "cache"))
    alone = image_json(project, "--base", "scratch", *cache, "--output", f"oci-layout:{tmp_path / 'alone'}")
    alone_layers = alone["images"][0]["layers"]
    assert len(alone_layers) > room, "the environment alone must need more room than the base leaves"
    out = tmp_path / "img"
    on_base = image_json(project, "--base", f"oci-layout:{base}:1", *cache, "--output", f"oci-layout:{out}")
    layers = on_base["images"][0]["layers"]
    assert on_base["images"][0]["installed"]  # not the record made on scratch, whose plan does not fit
    assert len(layers) == MAX_TOTAL_LAYERS
    assert [x["contents"] for x in layers].count("base") == below
    inspected = subprocess.run(["skopeo", "inspect", f"oci:{out}:latest"], capture_output=True, text=True, check=True)
    assert len(json.loads(inspected.stdout)["Layers"]) == MAX_TOTAL_LAYERS

    def entries(layout: Path, chosen: list[dict[str, str]]) -> list[str]:
        """Every file and link of the environment's layers (folders repeat in each layer)."""
        return sorted(m.name for x in chosen if x["contents"] != "base" for m in members(layout, x["digest"])
                      if not m.isdir())  # fmt: skip

    # Merged into fewer layers, each file once, none lost.
    assert entries(out, layers) == entries(tmp_path / "alone", alone_layers)
    fewer = image_json(project, "--base", f"oci-layout:{base}:1", "--max-layers", "5",
                       "--output", f"oci-layout:{tmp_path / 'fewer'}")  # fmt: skip
    assert len(fewer["images"][0]["layers"]) == below + 5
    refused = run_cli("image", project, "--base", f"oci-layout:{base}:1", "--layers", "per-package",
                      "--output", f"oci-layout:{tmp_path / 'x'}")  # fmt: skip
    line = assert_clean_error(refused)
    needed = len(LEAVES) + 2  # and the hub, and the top layer
    assert f"needs {needed} layers, more than the {room} left beside the base's {below} layers" in line, line
    assert not (tmp_path / "x").exists()
    full = tmp_path / "full"
    subprocess.run(["cp", "-a", base, full], check=True)
    for i in range(room):
        source = tmp_path / f"more{i}.txt"
        source.write_text(f"more {i}\n")
        subprocess.run(["umoci", "insert", "--image", f"{full}:1", source, f"/more/{source.name}"],
                       check=True, capture_output=True)  # fmt: skip
    no_room = run_cli("image", project, "--base", f"oci-layout:{full}:1", "--output", f"oci-layout:{tmp_path / 'y'}")
    line = assert_clean_error(no_room)
    assert f"the base's {MAX_TOTAL_LAYERS} layers leave no room for the environment" in line, line


def statement_of(bundle: Path) -> dict[str, Any]:
    """The in-toto statement a Sigstore bundle signs: its DSSE envelope's payload."""
    envelope = json.loads(bundle.read_text())["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return statement


def test_the_signed_statement_names_the_compressor_and_its_version(channel: ImageChannel, tmp_path: Path) -> None:
    """The same level gives other gzip bytes with another zlib: the SLSA statement of a signed
    image records the kind, the level asked for (here not the default, and the layers really are
    at it: gzip's XFL byte says maximum compression) and the compressor's version."""
    run_cli("keygen", "--output-prefix", tmp_path / "site", "--no-passphrase", check=True)
    project = channel.project(tmp_path / "p", "greeter", "libdata=1.0")
    out = tmp_path / "img"
    result = image_json(project, "--base", "scratch", "--compression", "gzip:9", "--sign-key", tmp_path / "site.key",
                        "--output", f"oci-layout:{out}")  # fmt: skip
    statement = statement_of(tmp_path / "img.sigstore.json")
    assert statement["subject"][0]["digest"] == {"sha256": result["digest"].split(":", 1)[1]}
    image = statement["predicate"]["buildDefinition"]["externalParameters"]["pixiPack"]["image"]
    assert image["compression"] == "gzip:9"
    assert image["compressor"] == f"zlib {zlib.ZLIB_RUNTIME_VERSION}"
    for layer in result["images"][0]["layers"]:
        header = (out / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]).read_bytes()[:10]
        assert header[8] == 2, header.hex()  # RFC 1952 XFL 2: "compressor used maximum compression"
    zstandard = pytest.importorskip("zstandard")
    image_json(project, "--base", "scratch", "--compression", "zstd:7", "--sign-key", tmp_path / "site.key",
               "--output", f"oci-layout:{tmp_path / 'z'}")  # fmt: skip
    image = statement_of(tmp_path / "z.sigstore.json")["predicate"]["buildDefinition"]["externalParameters"]
    libzstd = ".".join(str(part) for part in zstandard.ZSTD_VERSION)
    assert image["pixiPack"]["image"]["compression"] == "zstd:7"
    assert image["pixiPack"]["image"]["compressor"] == f"zstandard {zstandard.__version__} (libzstd {libzstd})"
