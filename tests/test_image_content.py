"""What an image holds, read from its blobs rather than trusted through digest equality: the
layer limit with a base of many layers, the provenance's compressor, the tar and gzip bytes, no
trace of this machine or of a channel's credentials, and what activation does and does not run."""

from __future__ import annotations

import base64
import datetime
import getpass
import gzip
import io
import json
import re
import socket
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from harness import assert_clean_error, run_cli
from image_support import ImageChannel, image_json, image_specs, need, run_image
from rattler_build import FileEntry, assemble_package
from support import ChannelServer, PackageSpec, basic_auth, build_channel, channel_records, write_lockfile

pytestmark = pytest.mark.posix

#: The documented ceiling of layers in an image, the base's included.
MAX_TOTAL_LAYERS = 100
#: Packages that each have one dependent (the hub): ``--layers auto`` gives each its own layer.
LEAVES = [f"leaf{i:02d}" for i in range(30)]


#: A file name past ustar's 100 bytes and one outside ASCII: each needs a PAX record.
LONG_NAME = "share/tarred/" + "n" * 110 + ".txt"
UNICODE_NAME = "share/tarred/ünïcödé.txt"


POST_LINK = 'echo "post-link ran" > "$PREFIX/post-link-ran"\n'


def content_specs() -> list[PackageSpec]:
    # tar.bz2, so the test reads each file's time in the package with tarfile.
    tarred = {"share/tarred/a.txt": "a\n", "share/tarred/sub/b.txt": "b\n", LONG_NAME: "long\n", UNICODE_NAME: "u\n"}
    return [
        *image_specs(),
        *(PackageSpec(name) for name in LEAVES),
        PackageSpec("hub", depends=list(LEAVES)),
        PackageSpec(
            "tarred",
            archive="tar.bz2",
            files={**tarred, "bin/tarred-tool": "#!/bin/sh\necho t\n"},
            symlinks={"share/tarred/link": "a.txt"},
            executable=("bin/tarred-tool",),
        ),
        PackageSpec("clamped", archive="tar.bz2"),
        PackageSpec("newest", archive="tar.bz2"),
    ]


def build_linker(channel: Path, work: Path) -> None:
    """A package with a post-link script that leaves a mark in the prefix when run. Its files are
    named one by one: from a folder, assemble_package leaves out hidden files such as this one."""
    work.mkdir(parents=True)
    (work / "post-link.sh").write_text(POST_LINK)
    (work / "linker.txt").write_text("linker\n")
    entries = [
        FileEntry.from_paths(work / "post-link.sh", "bin/.linker-post-link.sh"),
        FileEntry.from_paths(work / "linker.txt", "share/linker/linker.txt"),
    ]
    assemble_package(name="linker", version="1.0", target_platform="linux-64", build_string="0",
                     output_dir=channel / "linux-64", files=entries, detect_prefix=False)  # fmt: skip


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageChannel]:
    base = tmp_path_factory.mktemp("content-channel")
    build_linker(base / "channel", base / "linker")
    build_channel(base / "channel", content_specs(), base / "work")  # indexes the linker package too
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


def tar_headers(data: bytes) -> list[tuple[bytes, bytes, dict[str, str]]]:
    """Each header block of an uncompressed tar, read by hand (tarfile hides these): its type
    flag, its magic and version, and for a PAX extended header ('x') its records."""
    out = []
    pos = 0
    while data[pos : pos + 512] != bytes(512):
        block = data[pos : pos + 512]
        size = int(block[124:136].rstrip(b"\0 ") or b"0", 8)
        flag, body = block[156:157], data[pos + 512 : pos + 512 + size]
        records: dict[str, str] = {}
        while flag in (b"x", b"g") and body:
            length = int(body.split(b" ", 1)[0])
            key, _, value = body[:length].split(b" ", 1)[1].rstrip(b"\n").partition(b"=")
            records[key.decode()] = value.decode()
            body = body[length:]
        out.append((flag, block[257:265], records))
        pos += 512 + -(-size // 512) * 512
    assert not data[pos:].strip(b"\0"), "only end-of-archive blocks after the last entry"
    return out


def stamp(year: int, month: int = 1, day: int = 1) -> datetime.datetime:
    return datetime.datetime(year, month, day, tzinfo=datetime.UTC)


def test_layer_bytes_are_deterministic_and_hold_nothing_of_this_machine(channel: ImageChannel, tmp_path: Path) -> None:
    """The bytes the reproducibility promise rests on, read directly: gzip without name or time,
    tar entries in name order (so a folder before what it holds), POSIX (ustar magic, PAX records
    for long and non-ASCII names, never GNU's), owner 0 with no names, no xattrs or other
    records; folders and links at their package's build time, files at the time the package
    gives them but never later, the top layer at the image's time. No path, user or host name
    of this machine in any blob of the layout."""
    records = channel_records(channel.path, channel.server.url)  # fresh: the times are changed here
    times = {"tarred": stamp(2025, 6), "clamped": stamp(2001), "newest": stamp(2030)}
    picked = [r for r in records["linux-64"] + records["noarch"] if r.name.normalized in times]
    for record in picked:
        record.timestamp = times[record.name.normalized]
    project = tmp_path / "project"
    project.mkdir()
    (project / "pixi.toml").write_text('[workspace]\nname = "img"\nchannels = []\nplatforms = []\n')
    write_lockfile(project / "pixi.lock", {"default": {"linux-64": picked}}, channel.server.url)
    work, home, temp = tmp_path / "cwd-of-the-build", tmp_path / "home-of-the-user", tmp_path / "tmp-of-the-build"
    for folder in (work, home, temp):
        folder.mkdir()
    out = tmp_path / "img"
    env = {"HOME": str(home), "TMPDIR": str(temp)}
    result = image_json(project, "--base", "scratch", "--layers", "per-package", "--use-cache", tmp_path / "cache",
                        "--output", f"oci-layout:{out}", cwd=work, env=env)  # fmt: skip
    image_time = int(max(times.values()).timestamp())
    prefix = "app/.pixi/envs/default"
    # The time each file has in its package.
    packaged = {}
    for archive in channel.path.glob("*/*.tar.bz2"):
        with tarfile.open(archive) as tar:
            packaged.update({f"{prefix}/{m.name}": m.mtime for m in tar.getmembers() if not m.name.startswith("info/")})
    layers = result["images"][0]["layers"]
    assert sorted(x["contents"] for x in layers) == sorted([*times, "environment files of no single package"])
    pax_names = set()
    for layer in layers:
        raw = (out / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]).read_bytes()
        # RFC 1952: deflate, no flags (so no FNAME), MTIME 0, XFL 0 (level 6), OS 255 ("unknown",
        # what Python's gzip writes on every system; gzip(1) would write Unix's 3).
        assert raw[:10] == bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255]), raw[:10].hex()
        data = gzip.decompress(raw)
        headers = tar_headers(data)
        assert {magic for _, magic, _ in headers} == {b"ustar\x0000"}  # POSIX; GNU's is "ustar  \0"
        assert {flag for flag, _, _ in headers} <= {b"0", b"2", b"5", b"x"}  # no GNU long names, no global record
        for flag, _, pax in headers:
            if flag == b"x":
                assert set(pax) <= {"path", "linkpath"}, pax  # no times, owners, SCHILY.xattr, LIBARCHIVE
                pax_names.add(pax.get("path", ""))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            entries = tar.getmembers()
        names = [m.name for m in entries]
        assert names == sorted(names) and len(set(names)) == len(names)
        for i, name in enumerate(names):  # every folder above an entry comes before it
            parents = [p.as_posix() for p in PurePosixPath(name).parents if p.as_posix() != "."]
            assert all(p in names[:i] for p in parents), name
        assert {(m.uid, m.gid, m.uname, m.gname) for m in entries} == {(0, 0, "", "")}
        assert all(not m.pax_headers.keys() - {"path", "linkpath"} for m in entries)
        owner = layer["contents"]
        layer_time = image_time if owner not in times else min(image_time, int(times[owner].timestamp()))
        for m in entries:
            assert m.mode == (0o755 if m.isdir() else 0o777 if m.issym() else m.mode & 0o755), m.name
            assert m.mode in (0o755, 0o644, 0o777), (m.name, oct(m.mode))
            if m.isfile() and m.name in packaged:
                assert m.mtime == min(packaged[m.name], layer_time), (m.name, m.mtime)
            else:  # folders, links, and files the install wrote (its records, the top layer's)
                assert m.isdir() or m.issym() or "/conda-meta/" in m.name or owner not in times, m.name
                assert m.mtime == layer_time, (m.name, m.mtime, layer_time)
    # The cases that tell the rules apart really occur.
    assert {f"{prefix}/{LONG_NAME}", f"{prefix}/{UNICODE_NAME}"} <= pax_names
    clamped = [n for n in packaged if "/clamped/" in n]
    tarred = [n for n in packaged if "/tarred/" in n]
    assert clamped and all(packaged[n] > times["clamped"].timestamp() for n in clamped)
    assert tarred and all(packaged[n] < times["tarred"].timestamp() for n in tarred)
    # Nothing of this machine in any blob: configs, manifests, index, layer tars (decompressed).
    needles = [str(p).encode() for p in (tmp_path, work, home, temp, Path.home(), Path.cwd(), Path(sys.prefix))]
    words = [getpass.getuser(), socket.gethostname()]
    blobs = [*(out / "blobs" / "sha256").iterdir(), out / "index.json", out / "oci-layout"]
    assert len(blobs) == len(layers) + 4  # and the config, the manifest
    for path in blobs:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        for needle in needles:
            assert needle not in data, (path.name, needle)
        for word in words:  # as a word: "root" is in the config's "rootfs"
            assert not re.search(rb"(?<![\w.-])" + re.escape(word.encode()) + rb"(?![\w-])", data), (path.name, word)


def test_channel_credentials_never_reach_the_image(channel: ImageChannel, tmp_path: Path) -> None:
    """A channel that needs credentials: given in the lockfile's URLs (user:password, or a conda
    token in the path) or through rattler's auth file, they are used to fetch and appear nowhere
    in the image: conda-meta names the channel's URL without them, so every way gives the very
    same image. Not in the command's output either."""
    user, password, token = "image-user", "pa55-w0rd-9xq", "tk-5ecret-77aa"
    server = channel.server
    plain_url = server.url
    ways = {
        "userinfo": (plain_url.replace("http://", f"http://{user}:{password}@"), ()),
        "token": (f"{plain_url}t/{token}/", ()),
        "auth-file": (plain_url, ("--auth-file", str(tmp_path / "auth.json"))),
    }
    (tmp_path / "auth.json").write_text(
        json.dumps({"127.0.0.1": {"BasicHTTP": {"username": user, "password": password}}})
    )
    secrets = [password.encode(), token.encode(), f"{user}:{password}".encode(), user.encode()]
    digests = {}
    try:
        for name, (url, extra) in ways.items():
            server.reset()
            if name == "token":
                server.required_conda_token = token
            else:
                server.required_auth = {"/": basic_auth(user, password)}
            records = channel_records(channel.path, url)
            picked = [
                r
                for r in records["linux-64"]
                if r.name.normalized == "greeter" or r.file_name.startswith("libdata-1.0-")
            ]
            project = tmp_path / name
            project.mkdir()
            (project / "pixi.toml").write_text('[workspace]\nname = "img"\nchannels = []\nplatforms = []\n')
            write_lockfile(project / "pixi.lock", {"default": {"linux-64": picked}}, url)
            out = tmp_path / f"img-{name}"
            proc = run_cli("image", project, "--base", "scratch", "--layers", "per-package", *extra,
                           "--output", f"oci-layout:{out}", "--json", "-v", check=True)  # fmt: skip
            assert server.requests, "the packages came from the server, with the credentials"
            for secret in secrets:
                assert secret not in proc.stdout + proc.stderr, (name, secret)
            result = json.loads(proc.stdout)
            digests[name] = result["digest"]
            for path in (out / "blobs" / "sha256").iterdir():
                data = blob(out, "sha256:" + path.name)
                for secret in secrets:
                    assert secret not in data, (name, path.name, secret)
            greeter = next(x for x in result["images"][0]["layers"] if x["contents"] == "greeter")
            with tarfile.open(out / "blobs" / "sha256" / greeter["digest"].split(":", 1)[1]) as tar:
                meta_name = next(n for n in tar.getnames() if "/conda-meta/greeter-" in n)
                meta = json.loads(tar.extractfile(meta_name).read())  # type: ignore[union-attr]
            assert meta["url"] == f"{plain_url}linux-64/{meta['fn']}", name
            assert meta["channel"] == plain_url.rstrip("/"), name
    finally:
        server.reset()
    assert len(set(digests.values())) == 1, digests


PREFIX = "/app/.pixi/envs/default"
ENTRYPOINT = f"{PREFIX}/etc/pixi-pack-ci/entrypoint.sh"


def config_of(layout: Path, result: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(blob(layout, result["images"][0]["config_digest"]))
    return config


def test_activation_script_asked_for_runs_the_command_through_the_entrypoint(
    channel: ImageChannel, base_layout: Path, tmp_path: Path
) -> None:
    """--activation script with no activate.d scripts in the environment: the entrypoint is the
    script, and it activates by itself: run with CONDA_PREFIX unset and PATH cleared, the
    command still finds the environment."""
    project = channel.project(tmp_path / "p", "greeter", "libdata=1.0", "envvars")
    out = tmp_path / "img"
    result = image_json(project, "--base", f"oci-layout:{base_layout}:1", "--activation", "script",
                        "--cmd", "greet", "--output", f"oci-layout:{out}")  # fmt: skip
    config = config_of(out, result)["config"]
    assert config["Entrypoint"] == [ENTRYPOINT] and config["Cmd"] == ["greet"]
    ran = run_image(out, "latest", tmp_path / "run1")
    assert ran.returncode == 0, ran.stderr
    assert "hello from greeter" in ran.stdout and "libdata 1.0" in ran.stdout
    assert f"CONDA_PREFIX={PREFIX}\n" in ran.stdout and "FOO=bar\n" in ran.stdout
    cleared = f"unset CONDA_PREFIX; PATH=/bin; export PATH; exec {ENTRYPOINT} greet"
    ran = run_image(out, "latest", tmp_path / "run2", "/bin/sh", "-c", cleared)
    assert ran.returncode == 0, ran.stderr
    assert f"CONDA_PREFIX={PREFIX}\n" in ran.stdout and f"PATH={PREFIX}/bin:/bin\n" in ran.stdout
    assert "libdata 1.0" in ran.stdout


def test_activation_env_with_activate_d_scripts_says_they_do_not_run(
    channel: ImageChannel, base_layout: Path, tmp_path: Path
) -> None:
    """--activation env when a package ships an activate.d script: a warning on stderr (from the
    layer cache's record too), no entrypoint script, the activation in the config's Env; run, the
    script's variable is indeed not set."""
    project = channel.project(tmp_path / "p", "greeter", "libdata=1.0", "activator")
    runs = []
    for name in ("a", "b"):
        proc = run_cli("image", project, "--base", f"oci-layout:{base_layout}:1", "--activation", "env",
                       "--entrypoint", "greet", "--use-cache", tmp_path / "cache",
                       "--output", f"oci-layout:{tmp_path / name}", "--json", check=True)  # fmt: skip
        runs.append(json.loads(proc.stdout))
        lines = proc.stderr.decode().splitlines()
        assert lines == ["pixi-pack-ci: warning: packages ship etc/conda/activate.d scripts; "
                         "--activation env does not run them"], lines  # fmt: skip
    assert [r["images"][0]["installed"] for r in runs] == [True, False]
    config = config_of(tmp_path / "a", runs[0])["config"]
    assert config["Entrypoint"] == ["greet"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["CONDA_PREFIX"] == PREFIX and env["PATH"].startswith(f"{PREFIX}/bin:")
    names = [m.name for x in runs[0]["images"][0]["layers"] for m in members(tmp_path / "a", x["digest"])]
    assert f"{PREFIX}/etc/conda/activate.d/activator.sh"[1:] in names
    assert not any(n.endswith("etc/pixi-pack-ci/entrypoint.sh") for n in names)
    ran = run_image(tmp_path / "a", "latest", tmp_path / "run")
    assert ran.returncode == 0, ran.stderr
    assert "hello from greeter" in ran.stdout and "HELLO_DATA=\n" in ran.stdout


def test_link_scripts_are_not_run(channel: ImageChannel, base_layout: Path, tmp_path: Path) -> None:
    """A package's post-link script is never run while building (nothing of the target is): its
    mark is in no layer. The script itself is in the image and works: run there by hand, it
    leaves the mark."""
    project = channel.project(tmp_path / "p", "linker")
    out = tmp_path / "img"
    result = image_json(project, "--base", f"oci-layout:{base_layout}:1", "--output", f"oci-layout:{out}")
    names = [m.name for x in result["images"][0]["layers"] for m in members(out, x["digest"])]
    assert f"{PREFIX[1:]}/bin/.linker-post-link.sh" in names
    assert f"{PREFIX[1:]}/share/linker/linker.txt" in names
    assert not any(n.endswith("post-link-ran") for n in names)
    by_hand = f"PREFIX={PREFIX} /bin/sh {PREFIX}/bin/.linker-post-link.sh && cat {PREFIX}/post-link-ran"
    ran = run_image(out, "latest", tmp_path / "run", "/bin/sh", "-c", by_hand)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "post-link ran\n"
