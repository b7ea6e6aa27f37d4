"""How long the action takes to get a working ``pixi-pack-ci --version``, cold and warm, printed next
to a plain ``pip install`` of the same project (what the action did before its lock).

    python bench/action_install.py             # 3 runs of each, medians
    python bench/action_install.py --runs 5

All three install from one package index on 127.0.0.1 holding the lock's wheels for this machine
(tests/helpers/lock_index.py; PyPI is used once to fill .cache/action-wheelhouse), with every proxy
variable pointing at a closed port so nothing else is reachable, and empty uv and pip caches:

* cold: ``install.py install`` of the committed tree (``git archive HEAD``) into a new venv, as the
  action's install step runs it on a cache miss (fetch the locked uv, sync requirements/action.txt,
  build and install the action's wheel, run ``pixi-pack-ci --version``);
* warm: the venv of a cold run archived and extracted again, as actions/cache saves and restores it
  (tar, with zstd when installed, as actions/cache does), then what the action runs on a hit (the
  package-cache-key step, which starts the CLI; timed here as ``pixi-pack-ci --version``); the
  extraction is printed apart, since on GitHub it is the cache download;
* plain pip: ``python -m venv`` and ``pip install <checkout>`` (pip resolves and builds with an
  isolated hatchling), then ``pixi-pack-ci --version``.

Timings are facts of the machine: the load average and the CPU time of each run are printed too.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "helpers"))

from lock_index import LockIndex, offline_env, serve_lock_index  # noqa: E402

INSTALLER = REPO / "plugins" / "pixi_pack_ci" / "plugins" / "github" / "install.py"


def base_python() -> str:
    """The interpreter under this venv: what actions/setup-python hands the action."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def timed(step: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child processes) of ``step``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    step()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def archive_commands(archive: Path, folder: Path) -> tuple[list[str], list[str]]:
    compress = ["--use-compress-program", "zstd -T0"] if shutil.which("zstd") else ["-z"]
    create = ["tar", "--posix", *compress, "-cf", str(archive), "-C", str(folder.parent), folder.name]
    extract = ["tar", *(["--use-compress-program", "zstd -d"] if shutil.which("zstd") else ["-z"]), "-xf",
               str(archive), "-C", str(folder.parent)]  # fmt: skip
    return create, extract


def measure(
    tree: Path, index: LockIndex, scratch: Path, runs: int, python: str
) -> dict[str, list[tuple[float, float]]]:
    installer = str(tree / INSTALLER.relative_to(REPO))
    results: dict[str, list[tuple[float, float]]] = {"cold": [], "restore": [], "warm": [], "pip": []}
    for n in range(runs):
        base = scratch / f"run{n}"
        env = offline_env(index, base)
        venv = base / "pixi-pack-ci-venv"
        results["cold"].append(timed(partial(run, [python, installer, "install", "--venv", str(venv)], env)))

        create, extract = archive_commands(base / "env.tar", venv)
        subprocess.run(create, check=True)
        shutil.rmtree(venv)
        results["restore"].append(timed(partial(run, extract, env)))
        results["warm"].append(timed(partial(run, [str(venv / "bin" / "pixi-pack-ci"), "--version"], env)))
        hit = subprocess.run(
            [python, installer, "install", "--venv", str(venv)], env=env, capture_output=True, text=True
        )
        assert hit.returncode == 0 and "installed=false" in hit.stdout, "the restored environment must be taken"

        results["pip"].append(timed(partial(plain_pip, python, tree, base / "plain-venv", env)))
        shutil.rmtree(base)
    return results


def plain_pip(python: str, tree: Path, venv: Path, env: dict[str, str]) -> None:
    run([python, "-m", "venv", str(venv)], env)
    run([str(venv / "bin" / "pip"), "install", "--quiet", str(tree)], env)
    run([str(venv / "bin" / "pixi-pack-ci"), "--version"], env)


def report(results: dict[str, list[tuple[float, float]]], python: str, size: int, load: tuple[float, ...]) -> str:
    def cell(name: str) -> str:
        walls = [w for w, _ in results[name]]
        cpu = statistics.median(c for _, c in results[name])
        each = ", ".join(f"{w:.2f}" for w in walls)
        return f"{statistics.median(walls):6.2f} s  (cpu {cpu:5.2f} s; runs {each})"

    version = subprocess.run([python, "--version"], capture_output=True, text=True).stdout.strip()
    return "\n".join(
        [
            f"pixi-pack-ci's environment: {version} on {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in load)}; "
            f"index on 127.0.0.1; medians of {len(results['cold'])} runs",
            f"  cold  lock install to a working --version   {cell('cold')}",
            f"  warm  cache restored, to a working --version {cell('warm')}",
            f"        (restoring the {size / 2**20:.0f} MiB venv: tar -x   {cell('restore')})",
            f"  plain pip install . to a working --version   {cell('pip')}",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=base_python(), help="interpreter that runs the installer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pixi-pack-ci-bench-") as temp:
        scratch = Path(temp)
        # The committed tree, as the action's checkout holds it (the working tree may be mid-edit).
        tree = scratch / "tree"
        tree.mkdir()
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        index = serve_lock_index(scratch / "index", decoys=False)
        try:
            load = os.getloadavg()
            results = measure(tree, index, scratch / "runs", args.runs, args.python)
            # The size of what actions/cache keeps: one more cold install, measured on disk.
            venv = scratch / "size" / "venv"
            installer = str(tree / INSTALLER.relative_to(REPO))
            run([args.python, installer, "install", "--venv", str(venv)], offline_env(index, scratch / "size"))
            size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
        finally:
            index.stop()
    print(report(results, args.python, size, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
