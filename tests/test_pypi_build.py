"""PyPI entries that are not wheels, built at pack time as pixi builds them at install time.

Shaped like a real project: the project itself as ``pypi: .`` (hatchling), a local sub-package
(setuptools), a ``git+`` entry pinned to a commit of a real repository served by ``git daemon``
on 127.0.0.1 (flit-core), and an sdist on a local index. Build backends come from a PEP 503 index
on 127.0.0.1 filled from the wheelhouse ``scripts/test.sh`` downloads; the lockfile names that
index under ``indexes:`` as pixi writes it, so no build reaches the internet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rattler
from harness import PY, DemoChannel, assert_clean_error, run_cli
from support import (
    ChannelServer,
    LockedPypi,
    PackageSpec,
    build_channel,
    build_wheel,
    channel_records,
    write_pixi_lock,
    write_simple_index,
)

REPO = Path(__file__).resolve().parent.parent
WHEELHOUSE = REPO / ".cache" / "wheelhouse"
REALWORLD = REPO.parent / "shared" / "reference" / "realworld-lockfiles"


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-03-01T12:00:00Z", "GIT_COMMITTER_DATE": "2026-03-01T12:00:00Z"}
    env |= {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=env).stdout.strip()


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _setuptools(name: str, module: str, body: str, setup_py: str = "") -> dict[str, str]:
    files = {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\n\n[tool.setuptools]\npackages = ["{module}"]\n',
        f"{module}/__init__.py": body,
    }
    if setup_py:
        files["setup.py"] = setup_py
    return files


@dataclass
class BuildWorld:
    """The servers every build test shares: the package index and the git server."""

    index: ChannelServer
    git_root: Path
    git_port: int
    git_commit: str

    @property
    def index_url(self) -> str:
        return self.index.url + "simple/"

    @property
    def git_url(self) -> str:
        return f"git://127.0.0.1:{self.git_port}/git-lib.git"


def _simple_index(root: Path) -> None:
    """A PEP 503 index of the wheelhouse (and of ``files/``): one page per normalized name."""
    if not (WHEELHOUSE / ".complete").is_file():
        pytest.fail("no build-backend wheelhouse: run `bash scripts/test.sh` (it downloads .cache/wheelhouse)")
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    for wheel in WHEELHOUSE.glob("*.whl"):
        shutil.copy(wheel, files / wheel.name)
    write_simple_index(root, files)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuildWorld]:
    base = tmp_path_factory.mktemp("build-world")
    # The git repository (flit-core), with a later commit on main that the lockfile does not pin.
    repo = _write(
        base / "git" / "git-lib.git",
        {
            "pyproject.toml": '[build-system]\nrequires = ["flit_core>=3.4"]\nbuild-backend = "flit_core.buildapi"\n\n'
            '[project]\nname = "git-lib"\nversion = "0.2"\ndescription = "from git"\n',
            "git_lib.py": 'GIT = "git 0.2"\n',
        },
    )
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "locked")
    commit = _git(repo, "rev-parse", "HEAD")
    (repo / "git_lib.py").write_text('GIT = "moved on"\n')
    _git(repo, "commit", "-q", "-am", "later")
    port = _free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base / 'git'}", "--listen=127.0.0.1",
         f"--port={port}", str(base / "git")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    index_root = base / "index"
    _simple_index(index_root)
    server = ChannelServer(index_root).start()
    world = BuildWorld(server, base / "git", port, commit)
    # The sdist, built from its source by a real frontend against the local index.
    sdist_src = _write(base / "sdist-src", _setuptools("sdist-lib", "sdist_lib", 'SDIST = "sdist 1.0"\n'))
    subprocess.run(
        [sys.executable, "-m", "uv", "build", "--sdist", "--no-config", "--default-index", world.index_url,
         "--out-dir", str(index_root / "files"), str(sdist_src)],
        check=True, capture_output=True,
    )  # fmt: skip
    _simple_index(index_root)
    deadline = time.monotonic() + 10
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert time.monotonic() < deadline, "git daemon did not start"
        time.sleep(0.05)
    yield world
    daemon.terminate()
    server.stop()


def make_source_project(
    base: Path, world: BuildWorld, channel: DemoChannel, python_channel: Path, lock_version: int, **extra: LockedPypi
) -> Path:
    """The project: itself (hatchling) at ``.``, ``./libs/sub`` (setuptools), git-lib and sdist-lib."""
    project = _write(
        base,
        {
            "pyproject.toml": '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
            '[project]\nname = "demo-app"\nversion = "0.3.0"\nrequires-python = ">=3.8"\n'
            'dependencies = ["sub-lib", "git-lib", "sdist-lib"]\n\n'
            "[tool.pixi.workspace]\nchannels = []\nplatforms = []\n\n"
            '[tool.pixi.pypi-dependencies]\ndemo_app = { path = ".", editable = true }\n'
            'sub-lib = { path = "libs/sub", editable = true }\n',
            "src/demo_app/__init__.py": "from git_lib import GIT\nfrom sdist_lib import SDIST\n"
            "from sub_lib import SUB\nALL = ' + '.join([GIT, SDIST, SUB])\n",
            **{f"libs/sub/{k}": v for k, v in _setuptools("sub-lib", "sub_lib", 'SUB = "sub 1.0"\n').items()},
        },
    )
    sdist = next((world.index.root / "files").glob("sdist_lib-1.0.tar.gz"))
    entries = [
        LockedPypi("." if lock_version >= 7 else "./", "demo-app", "0.3.0", "1" * 64, editable=True),
        LockedPypi("./libs/sub", "sub-lib", "1.0", "2" * 64, editable=True),
        LockedPypi(f"git+{world.git_url}?branch=main#{world.git_commit}", "git-lib", "0.2"),
        LockedPypi(
            f"{world.index.url}files/{sdist.name}", "sdist-lib", "1.0", hashlib.sha256(sdist.read_bytes()).hexdigest()
        ),
        *extra.values(),
    ]
    conda = channel_records(channel.path, channel.url)
    py = channel_records(python_channel, channel.url + "py/")["linux-64"]
    write_pixi_lock(
        project / "pixi.lock", lock_version, channel.url, {"linux-64": conda["noarch"] + py}, {"linux-64": entries},
        indexes=[world.index_url],
    )  # fmt: skip
    return project


def _pypi_names(pack: Path) -> list[str]:
    with tarfile.open(pack) as tar:
        return sorted(n for n in tar.getnames() if n.startswith("pypi/"))


@pytest.mark.parametrize("lock_version", [6, 7])
def test_sources_are_built_packed_and_installed(
    lock_version: int, world: BuildWorld, channel: DemoChannel, python_channel: Path, tmp_path: Path
) -> None:
    project = make_source_project(tmp_path / "app", world, channel, python_channel, lock_version)
    cache = tmp_path / "cache"
    pack = tmp_path / "app.tar"
    proc = run_cli("pack", project, "-p", "linux-64", "-o", pack, "--use-cache", cache, "--json", check=True)
    builds = json.loads(proc.stdout)["builds"]
    assert sorted((b["name"], b["cached"]) for b in builds) == [
        ("demo-app", False), ("git-lib", False), ("sdist-lib", False), ("sub-lib", False),
    ]  # fmt: skip
    by_name = {b["name"]: b for b in builds}
    assert by_name["git-lib"]["source_digest"] == {"gitCommit": world.git_commit}
    assert (
        by_name["sdist-lib"]["source_digest"]["sha256"]
        == hashlib.sha256(next((world.index.root / "files").glob("sdist_lib-*.tar.gz")).read_bytes()).hexdigest()
    )
    assert "built in" in proc.stderr.decode() and "from git git://127.0.0.1" in proc.stderr.decode()
    wheels = _pypi_names(pack)
    assert ["-".join(n[len("pypi/") :].split("-")[:2]) for n in wheels] == [
        "demo_app-0.3.0", "git_lib-0.2", "sdist_lib-1.0", "sub_lib-1.0",
    ]  # fmt: skip
    assert all(n.endswith("-none-any.whl") for n in wheels)

    target = tmp_path / "deploy"
    run_cli("unpack", pack, "-o", target, check=True)
    site = target / "env" / "lib" / f"python{PY}" / "site-packages"
    out = subprocess.run(
        [str(target / "env" / "bin" / f"python{PY}"), "-c", "import demo_app; print(demo_app.ALL)"],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, check=True,
    ).stdout.strip()  # fmt: skip
    assert out == "git 0.2 + sdist 1.0 + sub 1.0", "the locked commit, not the later one"
    assert not [p.name for p in site.iterdir() if p.suffix == ".pth" or "editable" in p.name]

    # The same lockfile from another folder, warm: every wheel from the cache, the same bytes.
    moved = tmp_path / "elsewhere" / "app"
    shutil.copytree(project, moved)
    again = tmp_path / "again.tar"
    warm = run_cli("pack", moved, "-p", "linux-64", "-o", again, "--use-cache", cache, "--json", check=True)
    assert all(b["cached"] for b in json.loads(warm.stdout)["builds"])
    assert again.read_bytes() == pack.read_bytes()
    # A built wheel swapped in the cache with its record's sha256 rewritten (the MAC cannot be,
    # without this user's key): built again, never packed.
    (folder,) = [p.parent for p in (cache / "built").glob("*/demo_app-*.whl")]
    wheel = next(folder.glob("*.whl"))
    evil = build_wheel(tmp_path / "evil", "demo-app", "0.3.0", {"demo_app": "ALL = 'evil'\n"})
    shutil.copy(evil, wheel)
    record = json.loads((folder / "record.json").read_text())
    (folder / "record.json").write_text(json.dumps({**record, "sha256": hashlib.sha256(evil.read_bytes()).hexdigest()}))
    third = tmp_path / "third.tar"
    proc = run_cli("pack", moved, "-p", "linux-64", "-o", third, "--use-cache", cache, "--json", check=True)
    assert {b["name"]: b["cached"] for b in json.loads(proc.stdout)["builds"]}["demo-app"] is False
    assert third.read_bytes() == pack.read_bytes()
    # And cold, with no cache at all: built again, still the same bytes.
    cold = tmp_path / "cold.tar"
    run_cli("pack", moved, "-p", "linux-64", "-o", cold, check=True)
    assert cold.read_bytes() == pack.read_bytes()


def _extra(location: str, name: str, sha256: str | None = None) -> LockedPypi:
    return LockedPypi(location, name, "1.0", sha256)


def test_build_failures_are_one_line_and_leave_no_pack(
    world: BuildWorld, channel: DemoChannel, python_channel: Path, tmp_path: Path
) -> None:
    def failing(name: str, entry: LockedPypi, files: dict[str, str] | None = None, code: int = 1) -> str:
        project = make_source_project(tmp_path / name, world, channel, python_channel, 7, extra=entry)
        if files:
            _write(project, files)
        out = tmp_path / f"{name}.tar"
        line = assert_clean_error(run_cli("pack", project, "-p", "linux-64", "-o", out, "-q"), code=code)
        assert not out.exists() and not list(tmp_path.glob(f".{name}.tar*"))
        return line

    moving = failing("moving", LockedPypi(f"git+{world.git_url}?branch=main", "moving-lib"))
    assert "pins no commit" in moving and "moving-lib" not in moving.split("pins")[1]
    sdist = next((world.index.root / "files").glob("sdist_lib-*.tar.gz"))
    shutil.copy(sdist, world.index.root / "files" / "wrong_lib-1.0.tar.gz")
    wrong = failing("wrong-hash", _extra(f"{world.index.url}files/wrong_lib-1.0.tar.gz", "wrong-lib", "0" * 64))
    assert "wrong_lib-1.0.tar.gz" in wrong
    broken = failing(
        "broken",
        _extra("./libs/broken", "broken-lib"),
        {f"libs/broken/{k}": v for k, v in _setuptools(
            "broken-lib", "broken_lib", "", "raise RuntimeError('broken on purpose')\n"
        ).items()},
    )  # fmt: skip
    assert "could not build a wheel for broken-lib" in broken
    assert "the build backend failed: RuntimeError: broken on purpose" in broken


def test_unreachable_index_is_one_line(
    world: BuildWorld, channel: DemoChannel, python_channel: Path, tmp_path: Path
) -> None:
    project = make_source_project(tmp_path / "app", world, channel, python_channel, 7)
    lock = project / "pixi.lock"
    closed = f"http://127.0.0.1:{_free_port()}/simple/"
    lock.write_text(lock.read_text().replace(f"    - {world.index_url}\n", f"    - {closed}\n"))
    out = tmp_path / "x.tar"
    # A fresh uv cache, so nothing is answered from an earlier test's index pages; no retries.
    env = {"UV_CACHE_DIR": str(tmp_path / "uv"), "UV_HTTP_RETRIES": "0"}
    line = assert_clean_error(run_cli("pack", project, "-p", "linux-64", "-o", out, "-q", env=env))
    assert "could not build a wheel for demo-app" in line and f"Failed to fetch: {closed}" in line
    assert "Connection refused" in line and not out.exists()


def test_compiled_source_for_another_platform_is_refused(
    world: BuildWorld, channel: DemoChannel, python_channel: Path, tmp_path: Path
) -> None:
    # A setuptools project whose distribution has extension modules: its wheel is for this
    # machine's platform and Python (cp3X-cp3X-linux_x86_64), as any compiled sdist's would be.
    native = _setuptools(
        "native-lib", "native_lib", 'NATIVE = "native"\n',
        "from setuptools import setup\nfrom setuptools.dist import Distribution\n\n"
        "class Binary(Distribution):\n    def has_ext_modules(self):\n        return True\n\n"
        "setup(distclass=Binary)\n",
    )  # fmt: skip
    osx = channel.path / "osx-py"  # served beside the other channels
    if not (osx / "osx-arm64" / "repodata.json").is_file():
        spec = PackageSpec("python", version=f"{PY}.7", build="h0_0_cpython", subdir="osx-arm64")
        build_channel(osx, [spec], tmp_path)
    project = _write(tmp_path / "native", {f"libs/native/{k}": v for k, v in native.items()})
    osx_py = channel_records(osx, channel.url + "osx-py/")["osx-arm64"]
    lin_py = channel_records(python_channel, channel.url + "py/")["linux-64"]
    entry = [LockedPypi("./libs/native", "native-lib", "1.0")]
    write_pixi_lock(
        project / "pixi.lock", 7, channel.url, {"linux-64": lin_py, "osx-arm64": osx_py},
        {"linux-64": entry, "osx-arm64": entry}, indexes=[world.index_url],
    )  # fmt: skip
    ok = tmp_path / "linux.tar"
    run_cli("pack", project, "-p", "linux-64", "-o", ok, check=True)
    assert next(n for n in _pypi_names(ok) if n.endswith(".whl")).endswith("-linux_x86_64.whl")
    out = tmp_path / "osx.tar"
    line = assert_clean_error(run_cli("pack", project, "-p", "osx-arm64", "-o", out, "-q"), code=1)
    assert "native-lib builds into" in line and "not for osx-arm64" in line and "osx-arm64 runner" in line
    assert not out.exists()


def test_no_build_refuses_and_ignore_leaves_out(
    world: BuildWorld, channel: DemoChannel, python_channel: Path, tmp_path: Path
) -> None:
    project = make_source_project(tmp_path / "app", world, channel, python_channel, 7)
    requests = sum(world.index.requests.values())
    line = assert_clean_error(run_cli("pack", project, "-p", "linux-64", "--no-build", "-q"), code=1)
    assert "--no-build forbids building it" in line
    skipped = run_cli(
        "pack", project, "-p", "linux-64", "-o", tmp_path / "s.tar", "--ignore-pypi-non-wheel", check=True
    )
    assert skipped.stderr.decode().count("skipped PyPI package") == 4
    assert _pypi_names(tmp_path / "s.tar") == []
    dry = run_cli("pack", project, "-p", "linux-64", "--dry-run", check=True).stdout.decode()
    assert f"  build: git-lib from git {world.git_url} at {world.git_commit}" in dry
    assert "  build: demo-app from folder " in dry
    assert sum(world.index.requests.values()) == requests, "--no-build, --ignore and --dry-run build nothing"


def test_realworld_dry_runs_name_every_build(tmp_path: Path) -> None:
    """Every environment and platform of the 15 real lockfiles plans without the projects' sources,
    and every non-wheel PyPI entry is named with the source it would be built from."""
    from pixi_pack_ci.core.errors import LockfileError
    from pixi_pack_ci.core.lockfile import build_plan, load_lockfile

    pairs = with_builds = conda_sources = 0
    kinds: set[str] = set()
    for lock in sorted(REALWORLD.glob("*/pixi.lock")):
        loaded = load_lockfile(lock)
        for env_name, env in loaded.lock.environments():
            for platform in env.platforms():
                try:
                    plan = build_plan(loaded, env_name, platform.name)
                except LockfileError as exc:  # pixi-build conda source packages: not PyPI, out of scope here
                    assert "is a source package" in str(exc)
                    conda_sources += 1
                    continue
                pairs += 1
                locked = {p.location for p in env.packages(platform) or [] if isinstance(p, rattler.PypiLockedPackage)}
                non_wheels = {loc for loc in locked if not loc.split("?")[0].endswith(".whl")}
                assert {s.location for s in plan.pypi_sources} == non_wheels
                for source in plan.pypi_sources:
                    assert source.source is not None
                    kinds.add(source.source.kind)
                with_builds += bool(plan.pypi_sources)
    assert pairs == 232 and with_builds == 123 and conda_sources == 12  # the 15 lockfiles as committed
    assert kinds == {"path", "git", "sdist"}
    snake = tmp_path / "snakemake"
    snake.mkdir()
    shutil.copy(REALWORLD / "snakemake__snakemake" / "pixi.lock", snake / "pixi.lock")
    dry = run_cli("pack", snake, "-p", "linux-64", "--dry-run", check=True).stdout.decode()
    assert f"  build: snakemake from folder {snake}" in dry
    assert "  build: immutables from sdist https://files.pythonhosted.org/" in dry


def test_provenance_names_each_built_wheel_and_its_source(
    world: BuildWorld, channel: DemoChannel, python_channel: Path, tmp_path: Path
) -> None:
    import base64

    from signing import no_ci

    project = make_source_project(tmp_path / "app", world, channel, python_channel, 7)
    run_cli("keygen", "--output-prefix", tmp_path / "site", "--no-passphrase", env=no_ci(), check=True)
    pack = tmp_path / "app.tar"
    run_cli("pack", project, "-p", "linux-64", "-o", pack, "--sign-key", tmp_path / "site.key", env=no_ci(), check=True)
    bundle = json.loads((tmp_path / "app.tar.sigstore.json").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    git_wheel = next(d for d in deps if d["name"].startswith("git_lib-0.2-"))
    assert git_wheel["annotations"]["sourceDigest"] == {"gitCommit": world.git_commit}
    with tarfile.open(pack) as tar:
        member = tar.extractfile(f"pypi/{git_wheel['name']}")
        assert member is not None
        assert git_wheel["digest"]["sha256"] == hashlib.sha256(member.read()).hexdigest()
    sources = {d["name"]: d for d in deps if " source: " in d["name"]}
    assert sources[f"git-lib source: git+{world.git_url}?branch=main#{world.git_commit}"]["digest"] == {
        "gitCommit": world.git_commit
    }
    sdist = sources[next(n for n in sources if n.startswith("sdist-lib source: "))]
    assert sdist["uri"].startswith(world.index.url) and len(sdist["digest"]["sha256"]) == 64
    assert "uri" not in sources["demo-app source: ."], "a folder of the project has no URL to publish"
