"""Faults: a flaky server, SIGKILL of a pack or an unpack, an unpack that fails: the same bytes
or nothing half-written."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import Project, assert_clean_error, cache_entries, pack_ok, run_cli
from tarmembers import linux_repodata, members_of, replaced, write_tar

pytestmark = pytest.mark.usefixtures("no_ci_env")  # these tests describe their own CI environment


# --- a flaky server -------------------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True], ids=["into-the-pack", "through-a-cache"])
def test_thirty_percent_faults_still_give_the_same_bytes(project: Project, tmp_path: Path, cached: bool) -> None:
    """Both ways downloads reach a pack: straight into it, and through a --use-cache folder."""
    reference = tmp_path / "reference.tar"
    pack_ok(project.dir, reference)
    server = project.channel.server
    server.requests.clear()
    server.fault_rate, server.fault_seed = 0.30, 20261121
    flaky = tmp_path / "flaky.tar"
    extra = ["--use-cache", str(tmp_path / "cache")] if cached else []
    # The tool's own retry budget (10 attempts), not the test suite's shorter one.
    pack_ok(project.dir, flaky, *extra, env={"PIXI_PACK_CI_DOWNLOAD_ATTEMPTS": "10"})
    served = sum(server.faults_served.values())
    total = sum(server.requests.values())
    print(f"faults served: {dict(server.faults_served)} of {total} requests")
    assert served / total >= 0.2 and len(server.faults_served) >= 5, "the fault mix must really be exercised"
    assert flaky.read_bytes() == reference.read_bytes()


def test_a_permanently_failing_url_is_one_clear_error(project: Project, tmp_path: Path) -> None:
    project.channel.server.always_fail.add("/linux-64/libgreet-1.2.3-h1234_0.conda")
    proc = run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "e.tar", "-v")
    line = assert_clean_error_last_line(proc)
    assert "could not download libgreet-1.2.3-h1234_0.conda after 3 attempts" in line and "500" in line
    assert not (tmp_path / "e.tar").exists()


def assert_clean_error_last_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """With -v, retries are logged as warnings; the error is still the one last line."""
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


# --- SIGKILL --------------------------------------------------------------------------------------


@pytest.mark.posix  # SIGKILL
def test_sigkill_leaves_no_partial_pack_and_a_usable_cache(project: Project, tmp_path: Path) -> None:
    reference = tmp_path / "reference.tar"
    pack_ok(project.dir, reference)
    server = project.channel.server
    server.fault_rate, server.random_faults = 1.0, ("slow",)  # every download trickles: kills land mid-way
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    rng = random.Random(7)
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixi_pack_ci.core", "pack", str(project.dir), "-p", "linux-64",
             "-o", str(out / "env.tar"), "--use-cache", str(cache), "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Whatever was under way, the target is absent or complete: never a part of a pack.
        target = out / "env.tar"
        assert not target.exists() or target.read_bytes() == reference.read_bytes(), f"round {round_}"
    server.fault_rate = 0.0
    pack_ok(project.dir, out / "env.tar", "--use-cache", cache)
    assert (out / "env.tar").read_bytes() == reference.read_bytes()
    # The next run removed what the killed ones left behind, in the output folder and the cache.
    assert sorted(p.name for p in out.iterdir()) == ["env.tar"]
    assert not [p for p in cache.rglob("*") if p.name.endswith((".part", ".partial"))]
    assert cache_entries(cache) == project.linux_packages


@pytest.mark.posix  # SIGKILL
def test_sigkill_of_a_pack_written_in_place_leaves_nothing(project: Project, tmp_path: Path) -> None:
    """Without a cache the pack is written in place while it downloads: a kill must still leave
    no pack, and the next run removes the killed runs' partial file and download folder."""
    reference = tmp_path / "reference.tar"
    pack_ok(project.dir, reference, "--use-cache", tmp_path / "ref-cache")
    server = project.channel.server
    server.fault_rate, server.random_faults = 1.0, ("slow",)
    out = tmp_path / "out"
    out.mkdir()
    rng = random.Random(11)
    leftovers: set[str] = set()
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixi_pack_ci.core", "pack", str(project.dir), "-p", "linux-64",
             "-o", str(out / "env.tar"), "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Kill once the downloads are under way (their folder exists), at a random point in them.
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".download") for p in out.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        target = out / "env.tar"
        assert not target.exists() or target.read_bytes() == reference.read_bytes(), f"round {round_}"
        leftovers |= {p.name for p in out.iterdir()}
    assert any(name.endswith(".download") for name in leftovers), "the kills should have landed mid-download"
    (out / "env.tar").unlink(missing_ok=True)
    server.fault_rate = 0.0
    proc = pack_ok(project.dir, out / "env.tar", "-v")
    assert "in place" in proc.stderr.decode()
    assert (out / "env.tar").read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["env.tar"]


# --- unpack is atomic -----------------------------------------------------------------------------


def _environment_state(prefix: Path) -> dict[str, bytes]:
    return {str(p.relative_to(prefix)): p.read_bytes() for p in sorted(prefix.rglob("*")) if p.is_file()}


def test_a_failed_unpack_with_force_keeps_the_old_environment(project: Project, tmp_path: Path) -> None:
    """A package that matches its repodata hash but is not a valid archive fails inside
    rattler.install, after every check: the environment that was there survives untouched."""
    good_pack = tmp_path / "good.tar"
    pack_ok(project.dir, good_pack)
    target = tmp_path / "deploy"
    run_cli("unpack", good_pack, "-o", target, check=True)
    before = _environment_state(target / "env")
    assert before

    good = members_of(good_pack)
    repodata_name, repodata = linux_repodata(good)
    victim = sorted(repodata["packages.conda"])[0]
    junk = b"not a conda package " * 100
    repodata["packages.conda"][victim].update(sha256=hashlib.sha256(junk).hexdigest(), size=len(junk))
    members = replaced(good, repodata_name, json.dumps(repodata).encode())
    broken = write_tar(tmp_path / "broken.tar", replaced(members, f"channel/linux-64/{victim}", junk))

    line = assert_clean_error(run_cli("unpack", broken, "-o", target, "--force"), code=1)
    assert "could not install packages" in line, line
    assert _environment_state(target / "env") == before
    assert sorted(p.name for p in target.iterdir()) == ["activate.sh", "env"]


@pytest.mark.posix  # SIGKILL
def test_sigkill_of_an_unpack_leaves_no_partial_environment(project: Project, tmp_path: Path) -> None:
    pack = tmp_path / "e.tar"
    pack_ok(project.dir, pack)
    target = tmp_path / "deploy"
    rng = random.Random(5)
    leftovers: set[str] = set()
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixi_pack_ci.core", "unpack", str(pack), "-o", str(target), "--force", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Kill once its work folder (which names its PID) exists, at a random point of what follows
        # (0.1-0.2 s here).
        deadline = time.monotonic() + 30
        while not (target.is_dir() and any(p.name.startswith(f".env.{proc.pid}.") for p in target.iterdir())):
            assert time.monotonic() < deadline and proc.poll() is None, "the unpack never started its work folder"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.08))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # No environment at all, or a whole one: never a prefix with some packages missing.
        prefix = target / "env"
        if prefix.exists():
            assert len(list((prefix / "conda-meta").glob("*.json"))) == len(project.linux_packages), f"round {round_}"
        leftovers |= {p.name for p in target.iterdir()}
    assert any(name.endswith(".partial") for name in leftovers), "the kills should have landed mid-unpack"
    run_cli("unpack", pack, "-o", target, "--force", check=True)
    # The next unpack removed what the killed ones left behind.
    assert sorted(p.name for p in target.iterdir()) == ["activate.sh", "env"]
