"""Packages that install the same paths: every unpack gives the same tree, by a stated rule.

The fixture packages clash in the three ways real environments do: file over file (three
packages, one winning by dependency, the others by name; a symbolic link against a file), file
over folder (the file winning, the folder winning, one and several levels deep) and nested
folders (a file deep in shared folders; a file in the middle of other packages' folders).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rattler
from harness import pack_ok
from pixi_pack_ci.core import clobbers, install, unpack
from pixi_pack_ci.core.errors import UnpackError
from pixi_pack_ci.core.model import UnpackOptions
from support import ChannelServer, PackageSpec, build_channel, channel_records, write_lockfile

RUNS = 50


def clash_specs() -> list[PackageSpec]:
    return [
        # file over file: ff-b depends on ff-a (linked after it, wins); ff-c depends on nothing, so
        # it is linked before ff-b, after ff-a by name
        PackageSpec("ff-a", files={"share/clash/same.txt": "ff-a\n", "share/ff-a.txt": "only ff-a\n"}),
        PackageSpec("ff-b", depends=["ff-a >=1"], files={"share/clash/same.txt": "ff-b\n"}),
        PackageSpec("ff-c", files={"share/clash/same.txt": "ff-c\n", "share/ff-c.txt": "only ff-c\n"}),
        # a symbolic link against a file: ln-b comes later by name and its link wins
        PackageSpec("ln-a", files={"bin/tool": "#!/bin/sh\necho ln-a\n"}, executable=("bin/tool",)),
        PackageSpec("ln-b", files={"bin/tool-b": "#!/bin/sh\necho ln-b\n"}, symlinks={"bin/tool": "tool-b"}),
        # file over folder, the file wins (fd-file after fd-dir by name); the folder is 2 deep,
        # which is where plain rattler fails with "Not a directory"
        PackageSpec("fd-dir", files={"lib/thing/inner/deep.txt": "deep\n", "lib/thing/top.txt": "top\n"}),
        PackageSpec("fd-file", files={"lib/thing": "a file\n", "lib/fd-file.txt": "fd-file\n"}),
        # file over folder, the folder wins (fo-tree depends on fo-file), 3 levels deep
        PackageSpec("fo-file", files={"share/fo/item": "a file\n", "share/fo/other.txt": "fo-file\n"}),
        PackageSpec("fo-tree", depends=["fo-file"], files={"share/fo/item/a/b/c.txt": "c\n"}),
        # file over folder one level deep, the file wins (oz-file after oa-dir by name)
        PackageSpec("oa-dir", files={"etc/one/x.txt": "x\n"}),
        PackageSpec("oz-file", files={"etc/one": "one\n"}),
        # nested folders: the same file deep in shared folders, next to files only one has
        PackageSpec("nest-a", files={"etc/n1/n2/n3/cfg.txt": "nest-a\n", "etc/n1/a.txt": "a\n"}),
        PackageSpec("nest-b", files={"etc/n1/n2/n3/cfg.txt": "nest-b\n", "etc/n1/n2/b.txt": "b\n"}),
        # nested folders: mid-q's file sits where mid-p and mid-r have folders; mid-r (last by
        # name) decides that opt/d is a folder, so mid-q's file goes aside and mid-p's file,
        # which clashes with nothing left, stays at its own location
        PackageSpec("mid-p", files={"opt/d/y.txt": "y\n"}),
        PackageSpec("mid-q", files={"opt/d": "mid-q\n"}),
        PackageSpec("mid-r", files={"opt/d/z.txt": "z\n"}),
        # clashes with nothing
        PackageSpec("plain", files={"share/plain/readme.txt": "plain\n"}),
    ]


#: path → content (a file), "-> target" (a symbolic link); folders are checked through these
EXPECTED_FILES = {
    "share/clash/same.txt": "ff-b\n",
    "share/ff-a.txt": "only ff-a\n",
    "share/ff-c.txt": "only ff-c\n",
    "__clobbers__/ff-a/share/clash/same.txt": "ff-a\n",
    "__clobbers__/ff-c/share/clash/same.txt": "ff-c\n",
    "bin/tool": "-> tool-b",
    "bin/tool-b": "#!/bin/sh\necho ln-b\n",
    "__clobbers__/ln-a/bin/tool": "#!/bin/sh\necho ln-a\n",
    "lib/thing": "a file\n",
    "lib/fd-file.txt": "fd-file\n",
    "__clobbers__/fd-dir/lib/thing/inner/deep.txt": "deep\n",
    "__clobbers__/fd-dir/lib/thing/top.txt": "top\n",
    "share/fo/item/a/b/c.txt": "c\n",
    "share/fo/other.txt": "fo-file\n",
    "__clobbers__/fo-file/share/fo/item": "a file\n",
    "etc/one": "one\n",
    "__clobbers__/oa-dir/etc/one/x.txt": "x\n",
    "etc/n1/n2/n3/cfg.txt": "nest-b\n",
    "etc/n1/a.txt": "a\n",
    "etc/n1/n2/b.txt": "b\n",
    "__clobbers__/nest-a/etc/n1/n2/n3/cfg.txt": "nest-a\n",
    "opt/d/y.txt": "y\n",
    "opt/d/z.txt": "z\n",
    "__clobbers__/mid-q/opt/d": "mid-q\n",
    "share/plain/readme.txt": "plain\n",
}


@dataclass
class ClashPack:
    pack: Path
    names: list[str]


@pytest.fixture(scope="module")
def clash_pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClashPack]:
    base = tmp_path_factory.mktemp("clobbers")
    channel = base / "channel"
    build_channel(channel, clash_specs(), base / "work")
    server = ChannelServer(channel).start()
    try:
        records = channel_records(channel, server.url)
        project = base / "project"
        project.mkdir()
        (project / "pixi.toml").write_text('[workspace]\nname = "clash"\nchannels = []\nplatforms = []\n')
        write_lockfile(project / "pixi.lock", {"default": {"linux-64": records["linux-64"]}}, server.url)
        pack = base / "clash.tar"
        pack_ok(project, pack, "-q")
        yield ClashPack(pack, sorted(r.name.normalized for r in records["linux-64"]))
    finally:
        server.stop()


def snapshot(prefix: Path) -> dict[str, str]:
    """Every folder, file (content), link (target) and conda-meta record (its file lists; the rest
    names the work folder, which differs from run to run) of an environment."""
    tree: dict[str, str] = {}
    for root, dirs, files in os.walk(prefix):
        for name in dirs + files:
            path = Path(root, name)
            rel = path.relative_to(prefix).as_posix()
            if path.is_symlink():
                tree[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                tree[rel + "/"] = ""
            elif rel.startswith("conda-meta/") and rel.endswith(".json"):
                record = json.loads(path.read_bytes())
                tree[rel] = json.dumps([record["files"], record["paths_data"]], sort_keys=True)
            else:
                tree[rel] = path.read_text()
    return tree


def conda_meta(prefix: Path, name: str) -> dict[str, dict[str, str]]:
    """Where each path of package ``name`` is, by its conda-meta record: path → entry."""
    (record,) = (prefix / "conda-meta").glob(f"{name}-1.0-0.json")
    doc = json.loads(record.read_bytes())
    entries = {e.get("original_path") or e["_path"]: e for e in doc["paths_data"]["paths"]}
    assert sorted(doc["files"]) == sorted(e["_path"] for e in entries.values()), doc["files"]
    return entries


@pytest.mark.posix
def test_the_same_tree_every_time(clash_pack: ClashPack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first_attempts: list[bool] = []
    real_install = install._rattler_install

    def counting(records: list[rattler.RepoDataRecord], target: Path, *args: object) -> UnpackError | None:
        failure = real_install(records, target, *args)  # type: ignore[arg-type]
        if target.name == "env":
            first_attempts.append(failure is None)
        return failure

    monkeypatch.setattr(install, "_rattler_install", counting)
    trees = []
    for run in range(RUNS):
        result = unpack.run_unpack(UnpackOptions(str(clash_pack.pack), tmp_path / f"out{run}", quiet=True))
        assert result.prefix == tmp_path / f"out{run}" / "env"
        trees.append(snapshot(result.prefix))
    different = [run for run, tree in enumerate(trees) if tree != trees[0]]
    assert different == [], f"runs {different} differ from the first"
    # rattler alone failed (or left a different tree) in a share of these first attempts
    print(f"first attempts that failed: {first_attempts.count(False)} of {len(first_attempts)}")

    tree = trees[0]
    got = {path: content for path, content in tree.items() if path in EXPECTED_FILES}
    assert got == EXPECTED_FILES
    files = {p for p, content in tree.items() if not p.endswith("/") and not p.startswith("conda-meta/")}
    assert files - set(EXPECTED_FILES) == {"CACHEDIR.TAG"}
    # no folder is left that holds nothing: every one leads to something a package installs
    assert not [p for p in tree if p.endswith("/") and not any(q != p and q.startswith(p) for q in tree)]
    assert (tmp_path / "out0" / "env" / "lib" / "thing").is_file()
    assert (tmp_path / "out0" / "env" / "share" / "fo" / "item").is_dir()


@pytest.mark.posix
def test_conda_meta_says_where_each_copy_is(clash_pack: ClashPack, tmp_path: Path) -> None:
    prefix = unpack.run_unpack(UnpackOptions(str(clash_pack.pack), tmp_path, quiet=True)).prefix
    aside = {
        ("ff-a", "share/clash/same.txt"),
        ("ff-c", "share/clash/same.txt"),
        ("ln-a", "bin/tool"),
        ("fd-dir", "lib/thing/inner/deep.txt"),
        ("fd-dir", "lib/thing/top.txt"),
        ("fo-file", "share/fo/item"),
        ("oa-dir", "etc/one/x.txt"),
        ("nest-a", "etc/n1/n2/n3/cfg.txt"),
        ("mid-q", "opt/d"),
    }
    for name in clash_pack.names:
        for path, entry in conda_meta(prefix, name).items():
            if (name, path) in aside:
                assert entry["_path"] == f"__clobbers__/{name}/{path}", entry
                assert entry["original_path"] == path, entry
            else:
                assert entry["_path"] == path, entry
                assert "original_path" not in entry, entry
            assert os.path.lexists(prefix / entry["_path"]), entry


def test_a_pack_without_clashes_reads_no_file_lists(
    clash_pack: ClashPack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check costs one lstat: file lists are read only when rattler made __clobbers__."""

    def never(*args: object) -> None:
        raise AssertionError("file lists read for a pack without clashes")

    monkeypatch.setattr(install, "read_installed_paths", never)
    base = tmp_path / "quiet"
    specs = [s for s in clash_specs() if s.name in ("plain", "ff-a", "fd-dir", "mid-p")]
    build_channel(base / "channel", specs, base / "work")
    server = ChannelServer(base / "channel").start()
    try:
        records = channel_records(base / "channel", server.url)
        (base / "pixi.toml").write_text('[workspace]\nname = "q"\nchannels = []\nplatforms = []\n')
        write_lockfile(base / "pixi.lock", {"default": {"linux-64": records["linux-64"]}}, server.url)
        pack_ok(base, base / "quiet.tar", "-q")
    finally:
        server.stop()
    prefix = unpack.run_unpack(UnpackOptions(str(base / "quiet.tar"), tmp_path / "out", quiet=True)).prefix
    assert (prefix / "share" / "clash" / "same.txt").read_text() == "ff-a\n"
    assert not (prefix / "__clobbers__").exists()


# --- the rule, without installing -------------------------------------------------------------


def record(name: str, depends: tuple[str, ...] = ()) -> rattler.RepoDataRecord:
    package = rattler.PackageRecord(name, "1.0", rattler.BuildString("0"), 0, "linux-64", depends=list(depends))
    url = f"https://example.invalid/linux-64/{name}-1.0-0.conda"
    return rattler.RepoDataRecord(package, f"{name}-1.0-0.conda", url, "https://example.invalid/")


def test_link_order_is_by_dependency_level_then_by_name() -> None:
    records = [
        record("zlib"),
        record("app", ("lib >=1", "conda-forge::zlib 1.*")),
        record("lib", ("zlib",)),
        record("aaa"),
        record("virtual-user", ("__glibc >=2.17",)),  # a virtual package puts nothing before it
        record("cycle-a", ("cycle-b",)),
        record("cycle-b", ("cycle-a", "zlib")),
    ]
    # cycle-a and cycle-b wait for each other: the one with the fewest dependencies left goes first
    assert clobbers.link_order(records) == ["aaa", "virtual-user", "zlib", "lib", "app", "cycle-a", "cycle-b"]


def installed(name: str, *files: str, folders: tuple[str, ...] = ()) -> clobbers.InstalledPaths:
    return clobbers.InstalledPaths(name, files, folders)


def test_plan_rounds_and_placements() -> None:
    records = [record("a"), record("b"), record("c", ("a",)), record("quiet")]
    paths = [
        installed("a", "x/y/z.txt", "same.txt"),
        installed("b", "x", "same.txt"),
        installed("c", "same.txt"),
        installed("quiet", "elsewhere.txt"),
    ]
    plan = clobbers.plan_clashes(records, paths)
    assert plan is not None
    # every clashing pair in different rounds, the highest-ranked first where nothing stops it;
    # a has a path below b's file, so a is linked before b
    assert plan.rounds == (("quiet", "c"), ("a",), ("b",))
    where = {(p.package, p.path): p.location for p in plan.placements}
    assert where == {
        ("a", "x/y/z.txt"): "__clobbers__/a/x/y/z.txt",  # b (after a by name) decides x is a file
        ("b", "x"): "x",
        ("a", "same.txt"): "__clobbers__/a/same.txt",
        ("b", "same.txt"): "__clobbers__/b/same.txt",
        ("c", "same.txt"): "same.txt",  # c depends on a: linked last
    }
    assert plan.records == {"a": "a-1.0-0.json", "b": "b-1.0-0.json", "c": "c-1.0-0.json"}
    assert clobbers.plan_clashes(records, [installed("a", "one"), installed("b", "two")]) is None


def test_folders_listed_as_entries_are_folders() -> None:
    records = [record("a"), record("b"), record("c")]
    paths = [installed("a", folders=("share/empty",)), installed("b", "share/empty/f.txt"), installed("c")]
    plan = clobbers.plan_clashes(records, paths)
    assert plan is not None
    assert {(p.package, p.path): p.location for p in plan.placements} == {
        ("a", "share/empty"): "share/empty",
        ("b", "share/empty/f.txt"): "share/empty/f.txt",
    }


def test_packages_that_need_each_other_first_are_one_line_error() -> None:
    records = [record("a"), record("b")]
    paths = [installed("a", "x", "y/inner/f"), installed("b", "y", "x/inner/f")]
    with pytest.raises(UnpackError, match=r"^packages a and b each install a file where another .*; no order") as info:
        clobbers.plan_clashes(records, paths)
    assert "\n" not in str(info.value)


def test_noarch_python_paths_are_where_rattler_links_them() -> None:
    python = record("python")
    python.version = rattler.VersionWithSource("3.12.1")
    assert clobbers._python_layout([python], "linux-64") == ("lib/python3.12/site-packages", "bin")
    assert clobbers._python_layout([python], "win-64") == ("Lib/site-packages", "Scripts")
    layout = ("lib/python3.12/site-packages", "bin")
    assert clobbers._noarch_python_target("site-packages/pkg/__init__.py", layout) == (
        "lib/python3.12/site-packages/pkg/__init__.py"
    )
    assert clobbers._noarch_python_target("python-scripts/tool", layout) == "bin/tool"
    assert clobbers._noarch_python_target("share/x", layout) == "share/x"
