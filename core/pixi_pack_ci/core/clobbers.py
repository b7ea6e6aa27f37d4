"""Packages that install the same paths ("clobbering"), installed to the same tree every time.

``rattler.install`` (py-rattler 0.28) links packages concurrently. Its ``ClobberRegistry`` gives a
contested path to whichever package registers first and reorders the copies once all are linked.
Two things go wrong with that: a package with ``a/b/c`` and one with the file ``a`` race, and the
one linked second fails ("failed to create directory … Not a directory") or finds a folder where
its file goes; and the reordering skips a destination that is a folder, so a path can be left
with no copy at its own location. What is left over differs from run to run.

So when a first, ordinary install shows clashes (rattler made ``__clobbers__``, or it failed),
``unpack`` reads every package's ``info/paths.json``, decides below where every copy of a
contested path goes, installs again from rattler's cache in rounds (:attr:`ClashPlan.rounds`)
that rattler cannot race on, and then :func:`settle` puts each copy where the rule says and
writes that into ``conda-meta``. Packs without clashes never get here.

The rule. Packages are ranked in the order conda links them: by dependency level (0 for a
package that depends on no other package of the environment, else one more than its highest
dependency), then by name; a dependency cycle is broken at the package with the fewest
dependencies left (then by name). The one linked later wins. Walking the tree of paths from the
top, at each path the highest-ranked package that installs that path or anything below it
decides what the path is:

* file over file: the decider's copy stays at its own location; the other copies go to
  ``__clobbers__/<package>/<path>``, where rattler puts clobbered files.
* file over folder: if the decider installs a file there, that file stays, and every other
  package's copy of the path and of everything below it goes aside; if the decider installs
  something below it, the path is a folder, the other packages' files at that very path go
  aside, and the paths below are decided the same way.
* nested folders: decided one level at a time, so a path deep in shared folders keeps a copy at
  its own location unless a higher-ranked package has a file there or at a folder above it.

Every copy that goes aside is recorded in its package's ``conda-meta`` record as rattler does
(``_path`` under ``__clobbers__``, ``original_path`` where it belongs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import rattler
from rattler.package_streaming import PackageArchive

from .errors import UnpackError
from .platforms import is_windows
from .rattler_loop import run_rattler

CLOBBERS_DIR = "__clobbers__"

# The name in a dependency such as "python >=3.8", "conda-forge::numpy 1.*" or "libfoo[version='>1']".
_DEPENDENCY_NAME = re.compile(r"\s*(?:[^\s:]*::)?([^\s=<>!~\[;,]+)")


@dataclass(frozen=True)
class InstalledPaths:
    """What one package puts into an environment: paths relative to the prefix, with ``/``."""

    name: str
    files: tuple[str, ...]  # files and symbolic links
    folders: tuple[str, ...]  # entries of path_type "directory"


@dataclass(frozen=True)
class Placement:
    """Where one package's copy of one path ends up."""

    package: str
    path: str
    folder: bool
    aside: bool

    @property
    def clobbered(self) -> str:
        return f"{CLOBBERS_DIR}/{self.package}/{self.path}"

    @property
    def location(self) -> str:
        return self.clobbered if self.aside else self.path


@dataclass(frozen=True)
class ClashPlan:
    #: Package names linked in each round: packages that clash are never in the same round, and a
    #: package with something below another's file comes before it, so rattler never finds a file
    #: where it creates a folder. Packages that clash with nothing are all in the first round.
    rounds: tuple[tuple[str, ...], ...]
    #: Every path of every package that clashes with another, and where its copy goes.
    placements: tuple[Placement, ...]
    #: conda-meta file name of each package
    records: dict[str, str]


# --- reading what each package installs -------------------------------------------------------


def read_installed_paths(
    records: Sequence[rattler.RepoDataRecord], cache_dir: Path, platform: str
) -> list[InstalledPaths]:
    """The paths each package installs, as rattler computes them (noarch: python packages' moved
    into site-packages and bin). Read from the package archive, or from rattler's cache once the
    archive has been freed (``unpack`` deletes each archive when rattler has extracted it)."""
    layout = _python_layout(records, platform)
    raws = run_rattler(_read_all(records, cache_dir))
    return [_installed(record, kind, raw, layout) for record, (kind, raw) in zip(records, raws, strict=True)]


async def _read_all(records: Sequence[rattler.RepoDataRecord], cache_dir: Path) -> list[tuple[str, bytes]]:
    limit = asyncio.Semaphore(8)

    async def one(record: rattler.RepoDataRecord) -> tuple[str, bytes]:
        async with limit:
            return await _read_one(record, cache_dir)

    return list(await asyncio.gather(*(one(r) for r in records)))


async def _read_one(record: rattler.RepoDataRecord, cache_dir: Path) -> tuple[str, bytes]:
    archive = Path(url2pathname(urlsplit(record.url).path))
    try:
        package = await PackageArchive.from_path(archive)
        # One at a time: asking for both would stream a whole .tar.bz2 looking for info/files.
        raw = await package.read_file("info/paths.json")
        if raw is not None:
            return "paths.json", raw
        raw = await package.read_file("info/files")
        if raw is not None:
            return "files", raw
    except Exception:  # rattler's own exception types; a freed archive is read from the cache below
        if archive.exists():
            raise UnpackError(f"cannot read info/paths.json of {record.file_name}") from None
    info = cache_dir / f"{record.name.normalized}-{record.version}-{record.build}" / "info"
    for kind in ("paths.json", "files"):
        try:
            return kind, (info / kind).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UnpackError(f"cannot read info/{kind} of {record.file_name}: {exc.strerror}") from None
    raise UnpackError(f"{record.file_name} has neither info/paths.json nor info/files")


def _installed(record: rattler.RepoDataRecord, kind: str, raw: bytes, layout: tuple[str, str] | None) -> InstalledPaths:
    files: list[str] = []
    folders: list[str] = []
    try:
        if kind == "files":  # packages older than paths.json list their files one per line
            files = [line.strip() for line in raw.decode().splitlines() if line.strip()]
        else:
            for entry in json.loads(raw)["paths"]:
                (folders if entry.get("path_type") == "directory" else files).append(entry["_path"])
    except (ValueError, KeyError, TypeError):
        raise UnpackError(f"{record.file_name} has an unreadable info/{kind}") from None
    if record.noarch.python and layout is not None:
        files = [_noarch_python_target(p, layout) for p in files]
        folders = [_noarch_python_target(p, layout) for p in folders]
    return InstalledPaths(record.name.normalized, tuple(files), tuple(folders))


def _python_layout(records: Sequence[rattler.RepoDataRecord], platform: str) -> tuple[str, str] | None:
    """(site-packages, scripts folder) as rattler's ``PythonInfo`` computes them."""
    windows = is_windows(platform)
    for record in records:
        if record.name.normalized == "python":
            match = re.match(r"(\d+)\.(\d+)", str(record.version))
            if match is None:
                return None
            default = "Lib/site-packages" if windows else f"lib/python{match[1]}.{match[2]}/site-packages"
            return record.python_site_packages_path or default, "Scripts" if windows else "bin"
    return None


def _noarch_python_target(path: str, layout: tuple[str, str]) -> str:
    for prefix, target in (("site-packages/", layout[0]), ("python-scripts/", layout[1])):
        if path.startswith(prefix):
            return f"{target.rstrip('/')}/{path[len(prefix) :]}"
    return path


# --- deciding ---------------------------------------------------------------------------------


def link_order(records: Sequence[rattler.RepoDataRecord]) -> list[str]:
    """Package names in the order conda links them (see the module's docstring); later wins."""
    names = {r.name.normalized for r in records}
    waiting: dict[str, set[str]] = {}
    for record in records:
        name = record.name.normalized
        deps = {m[1].lower() for d in record.depends if (m := _DEPENDENCY_NAME.match(d))}
        waiting[name] = (deps & names) - {name}
    order: list[str] = []
    while waiting:
        ready = sorted(n for n, deps in waiting.items() if not deps)
        if not ready:  # a cycle
            ready = [min(waiting, key=lambda n: (len(waiting[n]), n))]
        order += ready
        for name in ready:
            del waiting[name]
        for deps in waiting.values():
            deps.difference_update(ready)
    return order


def plan_clashes(records: Sequence[rattler.RepoDataRecord], installed: Sequence[InstalledPaths]) -> ClashPlan | None:
    """Where every copy of a contested path goes and the rounds to install in; None if no two
    packages install the same path, or one a path inside another's."""
    partners, before = _clashes(installed)
    if not partners:
        return None
    order = link_order(records)
    rank = {name: i for i, name in enumerate(order)}
    staged = _rounds(partners, before, rank)
    first = tuple(n for n in order if n not in staged)
    later: dict[int, list[str]] = defaultdict(list)
    for name in sorted(staged, key=rank.__getitem__):
        later[staged[name]].append(name)
    rounds = (first + tuple(later[0]), *(tuple(later[i]) for i in range(1, len(later))))
    involved = [p for p in installed if p.name in partners]
    names = {r.name.normalized: f"{r.name.normalized}-{r.version}-{r.build}.json" for r in records}
    return ClashPlan(rounds, tuple(_placements(involved, rank)), {n: names[n] for n in partners})


def _clashes(installed: Sequence[InstalledPaths]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(partners, before): the packages each package clashes with, and those that must be linked
    before it (a package with a path below another's file is linked first: the other way round,
    rattler creates its folders below a file and fails)."""
    index: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for package in installed:
        for path in package.files:
            index[path].append((package.name, False))
        for path in package.folders:
            index[path].append((package.name, True))
    above = _EntriesAbove(index)
    partners: dict[str, set[str]] = defaultdict(set)
    before: dict[str, set[str]] = defaultdict(set)
    for path, owners in index.items():
        holders = above.folder(path.rpartition("/")[0])
        if len(owners) == 1 and not holders:
            continue  # the common case, kept cheap: tens of thousands of paths
        names = {name for name, _ in owners}
        if len(names) > 1:
            for name in names:
                partners[name] |= names - {name}
        for holder, is_folder in holders:
            for name in names - {holder}:
                partners[name].add(holder)
                partners[holder].add(name)
                if not is_folder:
                    before[holder].add(name)
    return partners, before


class _EntriesAbove:
    """The entries at a folder or at any folder above it, remembered per folder: paths share few
    folders, so each is looked up once."""

    def __init__(self, index: dict[str, list[tuple[str, bool]]]) -> None:
        self.index = index
        self.known: dict[str, list[tuple[str, bool]]] = {"": []}

    def folder(self, folder: str) -> list[tuple[str, bool]]:
        found = self.known.get(folder)
        if found is None:
            found = [*self.index.get(folder, ()), *self.folder(folder.rpartition("/")[0])]
            self.known[folder] = found
        return found


def _ancestors(path: str) -> Iterator[str]:
    cut = path.rfind("/")
    while cut > 0:
        yield path[:cut]
        cut = path.rfind("/", 0, cut)


def _rounds(partners: dict[str, set[str]], before: dict[str, set[str]], rank: dict[str, int]) -> dict[str, int]:
    """The round of each clashing package: after every partner already placed, after all that must
    come before it; among those free to go next, the highest-ranked first."""
    waiting = {name: set(before.get(name, ())) for name in partners}
    placed: dict[str, int] = {}
    while waiting:
        ready = [name for name, first in waiting.items() if not first]
        if not ready:
            raise UnpackError(
                f"packages {' and '.join(_cycle(waiting))} each install a file where another of them "
                "installs a folder; no order installs them all"
            )
        name = max(ready, key=rank.__getitem__)
        placed[name] = max((placed[p] + 1 for p in partners[name] if p in placed), default=0)
        del waiting[name]
        for first in waiting.values():
            first.discard(name)
    return placed


def _cycle(waiting: dict[str, set[str]]) -> list[str]:
    """Packages that must each come before the next: every package left waits for one."""
    seen: list[str] = []
    name = min(waiting)
    while name not in seen:
        seen.append(name)
        name = min(waiting[name])
    return sorted(seen[seen.index(name) :])


class _Node:
    __slots__ = ("children", "files", "folders", "touching")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.files: list[str] = []
        self.folders: list[str] = []
        self.touching: set[str] = set()  # packages with an entry here or below


def _placements(involved: Sequence[InstalledPaths], rank: dict[str, int]) -> list[Placement]:
    root = _Node()
    for package in involved:
        for paths, folder in ((package.files, False), (package.folders, True)):
            for path in paths:
                node = root
                for part in path.split("/"):
                    node = node.children.setdefault(part, _Node())
                    node.touching.add(package.name)
                (node.folders if folder else node.files).append(package.name)
    out: list[Placement] = []
    _decide(root, "", rank, out)
    return out


def _decide(node: _Node, path: str, rank: dict[str, int], out: list[Placement]) -> None:
    for part, child in sorted(node.children.items()):
        here = f"{path}/{part}" if path else part
        decider = max(child.touching, key=rank.__getitem__)
        if decider in child.files:
            out.append(Placement(decider, here, folder=False, aside=False))
            _all_aside(child, here, out, keep=decider)
            continue
        out.extend(Placement(name, here, folder=False, aside=True) for name in sorted(child.files))
        out.extend(Placement(name, here, folder=True, aside=False) for name in sorted(child.folders))
        _decide(child, here, rank, out)


def _all_aside(node: _Node, path: str, out: list[Placement], keep: str | None = None) -> None:
    out.extend(Placement(name, path, folder=False, aside=True) for name in sorted(node.files) if name != keep)
    out.extend(Placement(name, path, folder=True, aside=True) for name in sorted(node.folders))
    for part, child in sorted(node.children.items()):
        _all_aside(child, f"{path}/{part}", out)


# --- putting every copy where the plan says ----------------------------------------------------


def settle(prefix: Path, plan: ClashPlan) -> None:
    """Move each copy of a contested path where ``plan`` says (rattler has put most of them there
    already), remove the folders that only held copies now elsewhere, and update ``conda-meta``."""
    try:
        # Copies leave their own location before others take it, so a folder a file replaces has
        # been emptied by then.
        for item in plan.placements:
            if item.aside:
                _move_aside(prefix, item)
        for item in sorted((p for p in plan.placements if not p.aside), key=lambda p: p.path.count("/")):
            _move_into_place(prefix, item)
        _remove_empty_folders(prefix, plan.placements)
    except OSError as exc:
        raise UnpackError(f"cannot move a clobbered file: {exc.strerror}: {exc.filename}") from None
    _rewrite_conda_meta(prefix, plan)
    for item in plan.placements:
        if not os.path.lexists(prefix / item.location):
            raise UnpackError(f"{item.path} of {item.package} is missing from the environment after install")


def _move_aside(prefix: Path, item: Placement) -> None:
    aside = prefix / item.clobbered
    if os.path.lexists(aside):
        return
    aside.parent.mkdir(parents=True, exist_ok=True)
    if item.folder:
        # The folder at its own location holds other copies or nothing; a file that wins there
        # takes its place below once it is empty.
        aside.mkdir(exist_ok=True)
        return
    os.rename(prefix / item.path, aside)


def _move_into_place(prefix: Path, item: Placement) -> None:
    aside, own = prefix / item.clobbered, prefix / item.path
    if not os.path.lexists(aside):
        return  # rattler left it at its own location
    if item.folder:
        own.mkdir(parents=True, exist_ok=True)
        _remove_empty_tree(aside, item)
        return
    if os.path.lexists(own):
        _remove_empty_tree(own, item)  # folders that held only copies moved aside
    own.parent.mkdir(parents=True, exist_ok=True)
    os.rename(aside, own)


def _remove_empty_tree(path: Path, item: Placement) -> None:
    if path.is_symlink() or not path.is_dir():
        raise UnpackError(f"cannot put {item.path} of {item.package} in place: another file is there")
    for root, dirs, files in os.walk(path, topdown=False):
        if files:
            raise UnpackError(f"cannot put {item.path} of {item.package} in place: the folder there is not empty")
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)


def _remove_empty_folders(prefix: Path, placements: Sequence[Placement]) -> None:
    """Remove folders, deepest first, that rattler made for copies now elsewhere: below
    ``__clobbers__`` and above any contested path. What is left is the same whatever order
    rattler linked in. Folders that packages list as their own are kept."""
    keep = {prefix / p.location for p in placements if p.folder}
    candidates = {prefix / CLOBBERS_DIR}
    for item in placements:
        for path in (item.path, item.clobbered):
            candidates.update(prefix / above for above in _ancestors(path))
    for folder in sorted(candidates, key=lambda p: len(p.parts), reverse=True):
        if folder not in keep:
            _rmdir_if_empty(folder)


def _rmdir_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, not there, or not a folder: all fine
        os.rmdir(folder)


def _rewrite_conda_meta(prefix: Path, plan: ClashPlan) -> None:
    by_package: dict[str, dict[str, Placement]] = defaultdict(dict)
    for item in plan.placements:
        by_package[item.package][item.path] = item
    for name, file_name in sorted(plan.records.items()):
        record = prefix / "conda-meta" / file_name
        try:
            doc = json.loads(record.read_bytes())
            if _relocate_entries(doc, by_package[name]):
                # rattler's own layout (serde_json pretty), so rewritten records look like the others
                record.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UnpackError(f"cannot update conda-meta/{file_name} with its clobbered files: {exc}") from None


def _relocate_entries(doc: dict[str, Any], placements: dict[str, Placement]) -> bool:
    paths = doc["paths_data"]["paths"]
    renamed: dict[str, str] = {}
    for i, entry in enumerate(paths):
        old = str(entry["_path"]).replace("\\", "/")
        logical = str(entry.get("original_path") or old).replace("\\", "/")
        item = placements.get(logical)
        if item is None or item.location == old:
            continue
        rest = {k: v for k, v in entry.items() if k not in ("_path", "original_path")}
        moved = {"_path": item.location, **({"original_path": logical} if item.aside else {})}
        paths[i] = {**moved, **rest}  # rattler writes original_path right after _path
        renamed[old] = item.location
    files = doc.get("files")
    if renamed and isinstance(files, list):
        doc["files"] = [renamed.get(str(f).replace("\\", "/"), f) for f in files]
    return bool(renamed)
