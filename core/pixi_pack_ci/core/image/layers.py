"""Which installed file goes into which layer, and the layers' deterministic, compressed tars.

A unit is one conda package (its ``conda-meta`` files list, plus its ``conda-meta/<pkg>.json``,
kept beside its files as apko does, so per-layer scanners still see which package it is) or one
wheel (its ``RECORD``). Paths two units install, and paths nobody owns (the environment's own
state, activation files), go into a top layer. Package layers then depend only on the package,
the prefix and the compression: one changed package changes one layer.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

from ..model import ImageLayer
from .blobs import LAYER, BlobStore, Descriptor, HashingWriter
from .errors import ImageError, ImageUsageError

#: Layer limits: containerd stops at 127, overlayfs near 120, nixery budgets 94 of 125.
MAX_TOTAL_LAYERS = 100
DEFAULT_MAX_LAYERS = 40
#: A package this big, or this popular, gets its own layer under ``--layers auto``.
OWN_LAYER_BYTES = 1 << 20
COMPRESSIONS = ("gzip", "zstd", "none")


@dataclass
class Unit:
    """What goes into the image together: a package's files, by path relative to the prefix."""

    name: str
    paths: list[str] = field(default_factory=list)
    size: int = 0
    #: How many packages depend on it, directly or not.
    popularity: int = 0
    #: Its build time (seconds; 0 when unknown): its layer's folder and link times.
    timestamp: int = 0


@dataclass(frozen=True)
class Compression:
    kind: str
    level: int

    @property
    def media_type(self) -> str:
        return LAYER if self.kind == "none" else f"{LAYER}+{self.kind}"

    def describe(self) -> str:
        return self.kind if self.kind == "none" else f"{self.kind}:{self.level}"

    def compressor(self) -> str:
        """The library that makes the bytes, with its version (``zlib 1.3.1``, ``zstandard 0.25.0
        (libzstd 1.5.7)``; empty for none): another build may give other bytes at the same level,
        so the layer cache keys on it and the provenance records it."""
        if self.kind == "gzip":
            return f"zlib {zlib.ZLIB_RUNTIME_VERSION}"  # the library loaded, not the one compiled against
        if self.kind == "zstd":
            zstandard: Any = importlib.import_module("zstandard")
            libzstd = ".".join(str(part) for part in getattr(zstandard, "ZSTD_VERSION", ())) or "?"
            return f"zstandard {getattr(zstandard, '__version__', '?')} (libzstd {libzstd})"
        return ""


def parse_compression(text: str) -> Compression:
    kind, _, level = text.partition(":")
    if kind not in COMPRESSIONS or (level and (kind == "none" or not level.isdigit())):
        raise ImageUsageError(f"unknown compression {text!r}: use gzip[:LEVEL], zstd[:LEVEL] or none")
    default = {"gzip": 6, "zstd": 3, "none": 0}[kind]
    value = int(level) if level else default
    if (kind == "gzip" and not 1 <= value <= 9) or (kind == "zstd" and not 1 <= value <= 19):
        raise ImageUsageError(f"compression level {value} is out of range for {kind}")
    if kind == "zstd":
        try:
            importlib.import_module("zstandard")
        except ImportError:
            raise ImageUsageError("--compression zstd needs the zstandard package (pip install zstandard)") from None
    return Compression(kind, value)


def _dependents(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Package name → how many packages depend on it, directly or through others."""
    depends = {str(r["name"]): {str(d).split()[0] for d in r.get("depends") or ()} for r in records}
    counts = dict.fromkeys(depends, 0)
    for name in depends:
        seen: set[str] = set()
        todo = list(depends[name])
        while todo:
            dep = todo.pop()
            if dep in seen or dep not in depends or dep == name:
                continue
            seen.add(dep)
            todo.extend(depends[dep])
        for dep in seen:
            counts[dep] += 1
    return counts


def _wheel_paths(root: Path, dist_info: Path) -> list[str]:
    """The files a wheel installed, from its RECORD, relative to ``root``."""
    site = dist_info.parent
    out = []
    for line in (dist_info / "RECORD").read_text(encoding="utf-8").splitlines():
        name = line.rsplit(",", 2)[0].strip('"') if line.strip() else ""
        if not name:
            continue
        path = Path(os.path.normpath(site / name))
        if path.is_relative_to(root):
            out.append(path.relative_to(root).as_posix())
    return out


def find_units(root: Path, records: list[dict[str, Any]]) -> list[Unit]:
    """The units of an installed environment: its conda packages, then its wheels."""
    popularity = _dependents(records)
    units: list[Unit] = []
    for meta in sorted((root / "conda-meta").glob("*.json")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        name = str(data.get("name") or meta.stem)
        files = [str(f) for f in data.get("files") or ()]
        stamp = int(data.get("timestamp") or 0)
        stamp = stamp // 1000 if stamp > 10**11 else stamp  # repodata has milliseconds
        paths = [*files, f"conda-meta/{meta.name}"]
        units.append(Unit(name, paths, popularity=popularity.get(name, 0), timestamp=stamp))
    for record in sorted(root.glob("lib/python*/site-packages/*.dist-info/RECORD")):
        units.append(Unit("pypi:" + record.parent.name.split("-")[0].lower(), _wheel_paths(root, record.parent)))
    return units


def assign(root: Path, units: list[Unit]) -> list[str]:
    """Give each path to one unit: paths of several units, and paths of none, are returned (the
    top layer's); units keep only paths that exist and are theirs alone. Sizes are filled in."""
    owners: dict[str, int] = {}
    for unit in units:
        for path in dict.fromkeys(unit.paths):
            owners[path] = owners.get(path, 0) + 1
    every = walk(root)
    for unit in units:
        unit.paths = sorted(p for p in dict.fromkeys(unit.paths) if owners[p] == 1 and p in every)
        unit.size = sum(every[p] for p in unit.paths)
    owned = {p for u in units for p in u.paths}
    return sorted(p for p in every if p not in owned)


def walk(root: Path) -> dict[str, int]:
    """Every file, link and empty folder below ``root`` (relative path → size)."""
    found: dict[str, int] = {}
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        if not dirs and not files and rel != ".":
            found[rel] = 0
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            found[name if rel == "." else f"{rel}/{name}"] = os.lstat(path).st_size
    return found


def group(units: list[Unit], strategy: str, max_layers: int, limit: str = "") -> list[list[Unit]]:
    """The environment's layers before the top one (which ``single`` folds into its only layer),
    ``max_layers`` at most; ``limit`` says where that number comes from, for the refusal."""
    if strategy == "single" or (strategy != "per-package" and max_layers < 2):
        return [units]
    if strategy == "per-package":
        if len(units) + 1 > max_layers:
            why = limit or f"--max-layers {max_layers}; raise it (at most {MAX_TOTAL_LAYERS} with the base)"
            raise ImageUsageError(
                f"--layers per-package needs {len(units) + 1} layers, more than {why}, or use --layers auto"
            )
        return [[u] for u in units]
    ranked = sorted(units, key=lambda u: (-u.popularity, -u.size, u.name))
    pops = sorted((u.popularity for u in units), reverse=True)
    decile = pops[max(0, len(pops) // 10 - 1)] if pops else 0
    own = [u for u in ranked if u.size >= OWN_LAYER_BYTES or (u.popularity and u.popularity >= decile)]
    budget = max_layers - 1  # the top layer
    if len(own) < len(units):
        budget -= 1  # the layer the small ones share
    own = own[: max(0, budget)]
    rest = [u for u in ranked if u not in own]
    return [[u] for u in own] + ([rest] if rest else [])


@dataclass(frozen=True)
class LayerBlob:
    descriptor: Descriptor
    diff_id: str
    #: What it holds, for the config's history.
    comment: str
    #: Taken from the layer cache (``--use-cache``) rather than written.
    cached: bool = False


class _TarSink:
    """What ``tarfile`` writes into: hashes the uncompressed tar (the diff_id) and passes it on."""

    def __init__(self, out: Callable[[bytes], Any]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.position = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.position += len(data)
        self.out(data)
        return len(data)

    def tell(self) -> int:
        return self.position


@dataclass(frozen=True)
class LayerFiles:
    """How the environment's files become tar entries: where they come from and go, and their times."""

    root: Path
    prefix: PurePosixPath
    #: The layer's time: folders and links get it; no file is newer.
    epoch: int
    #: Files changed at or after this time were written by the install itself and get ``epoch``.
    build_start: float

    def names(self, paths: list[str]) -> list[str]:
        """``paths`` and every folder above them, up to ``/``, sorted (a folder before its contents)."""
        out: set[str] = set()
        base = self.prefix.relative_to("/")
        for path in paths:
            full = base / path
            out.add(full.as_posix())
            out.update(p.as_posix() for p in full.parents if p.as_posix() != ".")
        return sorted(out)

    def entry(self, name: str) -> tuple[tarfile.TarInfo, BinaryIO | None]:
        """The tar header of ``name`` and, for a file, its opened source."""
        info, source = self.describe(name)
        return info, (open(source, "rb") if source is not None else None)

    def describe(self, name: str) -> tuple[tarfile.TarInfo, Path | None]:
        """The tar header of ``name`` and, for a file, where its bytes are (nothing is read)."""
        full = PurePosixPath("/", name)
        # Folders above the prefix are not the environment's: they are made, not read.
        rel = full.relative_to(self.prefix) if full.is_relative_to(self.prefix) else None
        info = tarfile.TarInfo(name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = self.epoch
        source = self.root / rel if rel is not None and rel.as_posix() != "." else None
        st = os.lstat(source) if source is not None else None
        if st is None or stat.S_ISDIR(st.st_mode):
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            return info, None
        assert source is not None
        if stat.S_ISLNK(st.st_mode):
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(source)
            return info, None
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{source.name} is a special file; images hold files, folders and links")
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        info.size = st.st_size
        if st.st_mtime < self.build_start:
            info.mtime = min(int(st.st_mtime), self.epoch)
        return info, source


def write_layer(
    files: LayerFiles, paths: list[str], store: BlobStore, compression: Compression, comment: str
) -> LayerBlob:
    """One layer: a PAX tar of ``paths`` (sorted, uid/gid 0, normalised modes and times) through
    the compressor into the blob store, hashed on both sides of the compressor as it goes."""
    with store.writer() as blob:
        compressor, finish = _compressor(blob, compression)
        sink = _TarSink(compressor)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for name in files.names(paths):
                info, source = files.entry(name)
                if source is None:
                    tar.addfile(info)
                    continue
                with source:
                    tar.addfile(info, source)
        finish()
    descriptor = Descriptor(compression.media_type, blob.digest, blob.size)
    return LayerBlob(descriptor, "sha256:" + sink.sha.hexdigest(), comment)


def _compressor(out: HashingWriter, compression: Compression) -> tuple[Callable[[bytes], Any], Callable[[], None]]:
    """``(write, finish)`` of the compressor into ``out``: gzip with no name and mtime 0 (Python's
    gzip header, the same on every system), zstd in one thread, or none."""
    if compression.kind == "gzip":
        gz = gzip.GzipFile(filename="", mode="wb", compresslevel=compression.level, fileobj=out, mtime=0)
        return gz.write, gz.close
    if compression.kind == "zstd":
        # An optional dependency (the zstd extra): typed as Any so type checks pass without it.
        zstandard: Any = importlib.import_module("zstandard")
        writer = zstandard.ZstdCompressor(level=compression.level, threads=0).stream_writer(out, closefd=False)
        return writer.write, writer.close
    return out.write, lambda: None


class LayerSource(Protocol):
    """Where finished layers can come from instead of being written (:mod:`.layercache`)."""

    def get(self, files: LayerFiles, paths: list[str], store: BlobStore, comment: str) -> LayerBlob | None: ...

    def put(self, files: LayerFiles, paths: list[str], store: BlobStore, blob: LayerBlob) -> None: ...


def write_layers(
    files: LayerFiles,
    layers: list[ImageLayer],
    store: BlobStore,
    compression: Compression,
    cache: LayerSource | None = None,
    cacheable: Callable[[ImageLayer], bool] = lambda layer: False,
) -> list[LayerBlob]:
    """Write every layer, a few at a time (zlib and file reads release the GIL), in order. Each
    layer's times are its own (``layer.time``), so a package's layer does not change when another
    package, newer than it, joins the image. ``cacheable`` layers come from ``cache`` when it has
    them, and go into it when written."""

    def one(layer: ImageLayer) -> LayerBlob:
        layer_files = replace(files, epoch=layer.time)
        use_cache = cache if cache is not None and cacheable(layer) else None
        found = use_cache.get(layer_files, layer.paths, store, layer.comment) if use_cache else None
        if found is not None:
            return found
        blob = write_layer(layer_files, layer.paths, store, compression, layer.comment)
        if use_cache is not None:
            use_cache.put(layer_files, layer.paths, store, blob)
        return blob

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="layer") as pool:
        return list(pool.map(one, layers))
