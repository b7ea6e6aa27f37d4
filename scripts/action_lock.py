"""The action's hash-pinned locks, and the GitLab template's copy of them.

    python scripts/action_lock.py                  # rewrite the locks (keeping every pin that still fits)
    python scripts/action_lock.py --upgrade        # ... and take the newest versions that fit
    python scripts/action_lock.py --check          # scripts/test.sh: fail if they no longer match pyproject.toml
    python scripts/action_lock.py --release        # release prep: pin this version's wheel in the GitLab template
    python scripts/action_lock.py --check-release DIST   # release.yml: DIST's wheel is the one the template pins

requirements/action.txt is `uv pip compile --universal --generate-hashes` of pyproject.toml's
dependencies (with requirements/constraints.txt), for every Python from requires-python's floor;
requirements/build.txt the same of requirements/build.in, pyproject.toml's [build-system] requires.
--check resolves both again with the committed pins preferred: the pins must come out the same,
and every committed hash must still be offered (new files upstream are fine). It then resolves
the lock for each runner system and Python with wheels only, as the action installs it, so a
platform that loses its wheels fails here and not on a user's runner.

The GitLab template (gitlab/pixi-pack.yml) carries the runtime lock plus its own release's wheel,
so a job installs exactly these files with pip --require-hashes; --release builds that wheel from
`git archive HEAD` with the locked hatchling (reproducibly: hatchling writes fixed timestamps)
and writes its sha256 and the version into the template.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = Path("requirements/action.txt")
BUILD_LOCK = Path("requirements/build.txt")
BUILD_IN = Path("requirements/build.in")
CONSTRAINTS = Path("requirements/constraints.txt")
TEMPLATE = Path("gitlab/pixi-pack.yml")
COMPILE_COMMAND = "python scripts/action_lock.py"
#: The systems the action supports (GitHub's runner images) as uv names them; Linux at the
#: glibc of ubuntu-22.04, the oldest ubuntu-latest the action runs on.
TARGETS = {
    "Linux x86-64": "x86_64-manylinux_2_35",
    "Linux arm64": "aarch64-manylinux_2_35",
    "macOS arm64": "aarch64-apple-darwin",
    "macOS x86-64": "x86_64-apple-darwin",
    "Windows x86-64": "x86_64-pc-windows-msvc",
}
#: requires-python's floor up to the newest CPython release.
PYTHONS = ("3.11", "3.12", "3.13", "3.14")
BLOCK_START = "<<'PIXI_PACK_CI_LOCK'\n"
#: The block sits in a YAML literal scalar indented by six spaces, which GitLab strips.
INDENT = " " * 6
BLOCK_END = f"\n{INDENT}PIXI_PACK_CI_LOCK\n"


class LockError(Exception):
    pass


def uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def pyproject(root: Path) -> dict[str, object]:
    with open(root / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def python_floor(root: Path) -> str:
    requires = str(pyproject(root)["project"]["requires-python"])  # type: ignore[index]
    match = re.fullmatch(r">=\s*(\d+\.\d+)", requires.strip())
    if not match:
        raise LockError(f"requires-python {requires!r}: expected '>=X.Y'")
    return match.group(1)


# --- reading locks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str
    hashes: frozenset[str]

    def line(self) -> str:
        return f"{self.name}=={self.version}" + (f" ; {self.marker}" if self.marker else "")


def read_pins(text: str) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*(?:;\s*(.*?))?\s*(--hash=.*)?$", line)
        if not match:
            raise LockError(f"not a pinned requirement: {line[:100]}")
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", match.group(4) or ""))
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        pins[name] = Pin(name, match.group(2), (match.group(3) or "").strip(), hashes)
    return pins


def compare(committed: str, fresh: str) -> list[str]:
    """What differs between the committed lock and a fresh resolution of the same inputs: pins
    and markers exactly; hashes only where a committed one is no longer offered."""
    old, new = read_pins(committed), read_pins(fresh)
    problems = [f"{name} is locked but no longer required" for name in sorted(old.keys() - new.keys())]
    problems += [f"{new[name].line()} is required but not locked" for name in sorted(new.keys() - old.keys())]
    for name in sorted(old.keys() & new.keys()):
        if old[name].line() != new[name].line():
            problems.append(f"{old[name].line()} is locked, the inputs now give {new[name].line()}")
        elif gone := old[name].hashes - new[name].hashes:
            problems.append(f"{name} {old[name].version}: {len(gone)} locked file(s) no longer on the index")
        elif not old[name].hashes:
            problems.append(f"{name} has no hashes")
    return problems


# --- resolving ---------------------------------------------------------------------------------


def compile_lock(root: Path, source: list[str], output: Path, *, upgrade: bool = False) -> None:
    """``uv pip compile`` into ``output``; an existing ``output`` gives the preferred pins."""
    argv = [
        uv(), "pip", "compile", *source, "--universal", "--python-version", python_floor(root),
        "--generate-hashes", "--no-config", "--quiet", "--custom-compile-command", COMPILE_COMMAND,
        "--output-file", str(output),
    ]  # fmt: skip
    if upgrade:
        argv.append("--upgrade")
    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LockError(f"uv pip compile {' '.join(source)} failed:\n{proc.stderr.strip()}")


def runtime_sources() -> list[str]:
    return ["pyproject.toml", "--constraint", CONSTRAINTS.as_posix()]


def build_sources() -> list[str]:
    return [BUILD_IN.as_posix()]


def build_requires(root: Path) -> list[str]:
    return list(pyproject(root)["build-system"]["requires"])  # type: ignore[index]


def build_in_requires(root: Path) -> list[str]:
    lines = (root / BUILD_IN).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def coverage_problems(root: Path, lock: Path) -> list[str]:
    """Every target system and Python must install ``lock`` from wheels alone. Offline: the
    resolution that just checked the lock fetched every index page these need (online, each of
    the 20 resolutions revalidates all of them: 9 s apiece here, against 0.5 s)."""

    def resolve(target: str, python: str) -> str | None:
        proc = subprocess.run(
            [uv(), "pip", "compile", str(lock), "--no-deps", "--only-binary", ":all:", "--python-platform",
             TARGETS[target], "--python-version", python, "--no-config", "--quiet", "--offline"],
            cwd=root, capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode == 0:
            return None
        cause = next((line.strip() for line in proc.stderr.splitlines() if "cause:" in line), proc.stderr.strip())
        return f"{lock.name} on {target}, Python {python}: {cause}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [pool.submit(resolve, target, python) for target in TARGETS for python in PYTHONS]
        return [problem for job in jobs if (problem := job.result())]


# --- the GitLab template -----------------------------------------------------------------------


def template_block(template: str) -> str:
    """The requirements the template's job writes (its heredoc, as the shell sees it)."""
    start = template.index(BLOCK_START) + len(BLOCK_START)
    lines = template[start : template.index(BLOCK_END, start)].split("\n")
    return "".join(line.removeprefix(INDENT) + "\n" for line in lines)


def lock_requirements(lock_text: str) -> list[str]:
    """The lock's requirement and hash lines, without comments (the template needs no provenance notes)."""
    return [line for line in lock_text.splitlines() if line.strip() and not line.strip().startswith("#")]


def stamped_template(template: str, lock_text: str, version: str | None = None, wheel_sha256: str | None = None) -> str:
    """The template with ``lock_text`` as its dependency block; with a version and a wheel hash,
    also its own release (the ``version`` input's default and the wheel line)."""
    block = template_block(template)
    own = re.match(r"pixi-pack-ci==(\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})\n", block)
    if own is None:
        raise LockError(f"{TEMPLATE}: its lock block does not start with the pixi-pack-ci wheel's line")
    version = version or own.group(1)
    wheel_sha256 = wheel_sha256 or own.group(2)
    new_block = "\n".join(
        INDENT + line
        for line in [f"pixi-pack-ci=={version} \\", f"    --hash=sha256:{wheel_sha256}", *lock_requirements(lock_text)]
    )
    start = template.index(BLOCK_START) + len(BLOCK_START)
    out = template[:start] + new_block + template[template.index(BLOCK_END, start) :]
    out, count = re.subn(r'(\n      default: )"[^"]*"(  # this template\'s release)', rf'\g<1>"{version}"\2', out)
    if count != 1:
        raise LockError(f"{TEMPLATE}: cannot find the version input's default")
    return out


def template_release(template: str) -> tuple[str, str]:
    """(version, wheel sha256) the template pins for its own release."""
    own = re.match(r"pixi-pack-ci==(\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})\n", template_block(template))
    if own is None:
        raise LockError(f"{TEMPLATE}: no pixi-pack-ci line at the top of its lock block")
    default = re.search(r'\n      default: "([^"]*)"  # this template\'s release', template)
    if default is None or default.group(1) != own.group(1):
        raise LockError(f"{TEMPLATE}: the version input's default is not the pinned wheel's version {own.group(1)}")
    return own.group(1), own.group(2)


# --- commands ----------------------------------------------------------------------------------


def write(root: Path, *, upgrade: bool) -> None:
    (root / "requirements").mkdir(exist_ok=True)
    compile_lock(root, runtime_sources(), root / RUNTIME_LOCK, upgrade=upgrade)
    compile_lock(root, build_sources(), root / BUILD_LOCK, upgrade=upgrade)
    template = (root / TEMPLATE).read_text()
    (root / TEMPLATE).write_text(stamped_template(template, (root / RUNTIME_LOCK).read_text()))
    print(f"wrote {RUNTIME_LOCK}, {BUILD_LOCK} and the lock block of {TEMPLATE}")


def check(root: Path) -> list[str]:
    problems: list[str] = []
    if build_in_requires(root) != build_requires(root):
        problems.append(f"{BUILD_IN} must list pyproject.toml's [build-system] requires: {build_requires(root)}")
    with tempfile.TemporaryDirectory() as temp:
        for lock, sources in ((RUNTIME_LOCK, runtime_sources()), (BUILD_LOCK, build_sources())):
            fresh = Path(temp) / lock.name
            shutil.copy(root / lock, fresh)  # the committed pins are the preferences
            compile_lock(root, sources, fresh)
            problems += [f"{lock}: {p}" for p in compare((root / lock).read_text(), fresh.read_text())]
    if not problems:  # a stale lock would only repeat its problems per platform
        problems += coverage_problems(root, root / RUNTIME_LOCK) + coverage_problems(root, root / BUILD_LOCK)
    template = (root / TEMPLATE).read_text()
    version = str(pyproject(root)["project"]["version"])  # type: ignore[index]
    try:
        pinned, _ = template_release(template)
        if pinned != version:
            problems.append(f"{TEMPLATE} installs {pinned}, pyproject.toml is {version} (run --release)")
        if template != stamped_template(template, (root / RUNTIME_LOCK).read_text()):
            problems.append(f"{TEMPLATE}: its lock block is not {RUNTIME_LOCK}")
    except LockError as exc:
        problems.append(str(exc))
    return problems


def release(root: Path) -> None:
    """Build this version's wheel as release.yml will (from the committed tree, locked hatchling)
    and pin it in the template."""
    version = str(pyproject(root)["project"]["version"])  # type: ignore[index]
    with tempfile.TemporaryDirectory() as temp:
        tree = Path(temp) / "tree"
        tree.mkdir()
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=root, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        wheel = build_wheel(tree, Path(temp) / "dist", version)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    template = (root / TEMPLATE).read_text()
    (root / TEMPLATE).write_text(stamped_template(template, (root / RUNTIME_LOCK).read_text(), version, digest))
    print(f"{TEMPLATE} now installs pixi-pack-ci {version}, wheel sha256 {digest}")


def build_wheel(tree: Path, out: Path, version: str) -> Path:
    installer = tree / "plugins/pixi_pack_ci/plugins/github/install.py"
    subprocess.run([sys.executable, str(installer), "build", str(out)], check=True)
    wheels = list(out.glob(f"pixi_pack_ci-{version}-*.whl"))
    if len(wheels) != 1:
        raise LockError(f"expected one pixi_pack_ci {version} wheel in {out}, found {[w.name for w in wheels]}")
    return wheels[0]


def check_release(root: Path, dist: Path) -> list[str]:
    version, digest = template_release((root / TEMPLATE).read_text())
    wheels = list(dist.glob(f"pixi_pack_ci-{version}-*.whl"))
    if len(wheels) != 1:
        return [f"{dist} holds no single pixi_pack_ci {version} wheel, which {TEMPLATE} installs"]
    built = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if built != digest:
        return [
            f"{wheels[0].name} has sha256 {built}, {TEMPLATE} pins {digest}: run "
            f"`{COMPILE_COMMAND} --release` on the release commit and tag again"
        ]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if the locks no longer match pyproject.toml")
    mode.add_argument("--upgrade", action="store_true", help="take the newest versions that fit")
    mode.add_argument("--release", action="store_true", help="pin this version's wheel in the GitLab template")
    mode.add_argument("--check-release", type=Path, metavar="DIST", help="DIST's wheel is the one the template pins")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.check or args.check_release:
            problems = check(args.root) if args.check else check_release(args.root, args.check_release)
            for problem in problems:
                print(f"action lock: {problem}", file=sys.stderr)
            if problems:
                if args.check:
                    print(f"action lock: regenerate with `{COMPILE_COMMAND}`", file=sys.stderr)
                return 1
            if args.check:
                print("action lock: matches pyproject.toml; wheels for every runner system and Python")
            else:
                print(f"action lock: {args.check_release} holds the wheel {TEMPLATE} pins")
            return 0
        if args.release:
            release(args.root)
        else:
            write(args.root, upgrade=args.upgrade)
        return 0
    except LockError as exc:
        print(f"action lock: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
