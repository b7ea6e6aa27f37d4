"""PyPI wheels: does a wheel fit the environment's Python, and installing it offline with pypa ``installer``.

The target's Python is never run: its version and layout come from the locked ``python`` record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging import tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from .errors import PixiPackError
from .platforms import is_windows, wheel_script_kind

_VERSION = re.compile(r"^(\d+)\.(\d+)")


@dataclass(frozen=True)
class PythonInfo:
    """What installing wheels needs to know about an environment's Python."""

    major: int
    minor: int
    platform: str
    site_packages: str  # relative to the prefix, forward slashes
    freethreading: bool = False

    @property
    def is_windows(self) -> bool:
        return is_windows(self.platform)

    @property
    def scripts_dir(self) -> str:
        return "Scripts" if self.is_windows else "bin"

    @property
    def interpreter(self) -> str:
        return "python.exe" if self.is_windows else f"bin/python{self.major}.{self.minor}"

    @property
    def include_dir(self) -> str:
        return "Include" if self.is_windows else f"include/python{self.major}.{self.minor}"

    @classmethod
    def from_record(cls, record: dict[str, Any], platform: str) -> PythonInfo:
        match = _VERSION.match(str(record.get("version", "")))
        if not match:
            raise PixiPackError(f"cannot read the Python version from the python package ({record.get('version')!r})")
        major, minor = int(match.group(1)), int(match.group(2))
        build = str(record.get("build", ""))
        freethreading = "_cp3" in build and build.rstrip("0123456789_").endswith("t")
        site = record.get("python_site_packages_path")
        if not site:
            abi = "t" if freethreading else ""
            site = "Lib/site-packages" if is_windows(platform) else f"lib/python{major}.{minor}{abi}/site-packages"
        return cls(major, minor, platform, str(site), freethreading)


def find_python(records: Iterable[dict[str, Any]], platform: str) -> PythonInfo | None:
    for record in records:
        if record.get("name") == "python":
            return PythonInfo.from_record(record, platform)
    return None


def _platform_tags(platform: str) -> list[str]:
    os_name, _, arch = platform.partition("-")
    if os_name == "linux":
        machine = {"64": "x86_64", "aarch64": "aarch64", "ppc64le": "ppc64le", "s390x": "s390x", "32": "i686"}.get(arch)
        if machine is None:
            return []
        # The glibc of the target is unknown at pack time; accept every manylinux level.
        many = [f"manylinux_2_{minor}_{machine}" for minor in range(60, 4, -1)]
        legacy = {
            "x86_64": ["manylinux2014", "manylinux2010", "manylinux1"],
            "i686": ["manylinux2014", "manylinux2010", "manylinux1"],
        }.get(machine, ["manylinux2014"])
        return [*many, *(f"{tag}_{machine}" for tag in legacy), f"linux_{machine}"]
    if os_name == "osx":
        machine = "arm64" if arch == "arm64" else "x86_64"
        return list(tags.mac_platforms((99, 0), machine))
    if os_name == "win":
        return [{"64": "win_amd64", "arm64": "win_arm64", "32": "win32"}.get(arch, "win_amd64")]
    return []


def supported_tags(py: PythonInfo) -> set[tags.Tag]:
    version = (py.major, py.minor)
    platforms = _platform_tags(py.platform)
    supported: set[tags.Tag] = set()
    abis = [f"cp{py.major}{py.minor}t"] if py.freethreading else None
    supported.update(tags.cpython_tags(version, abis=abis, platforms=platforms))
    supported.update(tags.compatible_tags(version, f"cp{py.major}{py.minor}", platforms))
    return supported


def wheel_name(file_name: str) -> str:
    try:
        name, _version, _build, _tags = parse_wheel_filename(file_name)
    except InvalidWheelFilename as exc:
        raise PixiPackError(f"{file_name!r} is not a valid wheel file name: {exc}") from None
    return str(name)


def check_wheel_fits(file_name: str, py: PythonInfo) -> None:
    """Raise unless one of the wheel's tags is one the environment's Python accepts."""
    try:
        _name, _version, _build, wheel_tags = parse_wheel_filename(file_name)
    except InvalidWheelFilename as exc:
        raise PixiPackError(f"{file_name!r} is not a valid wheel file name: {exc}") from None
    if not wheel_tags & supported_tags(py):
        shown = ", ".join(sorted(str(t) for t in wheel_tags))
        raise PixiPackError(
            f"wheel {file_name} does not fit the environment's Python {py.major}.{py.minor} on {py.platform} "
            f"(its tags: {shown})"
        )


def canonical(name: str) -> str:
    return str(canonicalize_name(name))


def install_wheels(prefix: Path, wheels: list[Path], py: PythonInfo, *, final_prefix: Path | None = None) -> list[str]:
    """Install wheels into the prefix offline, without running the target Python. Returns dist names.

    ``final_prefix`` is where the environment will be used from when it is built elsewhere and
    moved there afterwards: scripts get that interpreter in their shebang."""
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    site = str(prefix / py.site_packages)
    schemes = {
        "purelib": site,
        "platlib": site,
        "headers": str(prefix / py.include_dir),
        "scripts": str(prefix / py.scripts_dir),
        "data": str(prefix),
    }
    destination = SchemeDictionaryDestination(
        schemes,
        interpreter=str((final_prefix or prefix) / py.interpreter),
        script_kind=wheel_script_kind(py.platform),
        bytecode_optimization_levels=(),
    )
    installed: list[str] = []
    for wheel in wheels:
        try:
            with WheelFile.open(wheel) as source:
                install(source, destination, additional_metadata={"INSTALLER": b"pixi-pack-ci\n"})
        except Exception as exc:
            raise PixiPackError(f"could not install wheel {wheel.name}: {' '.join(str(exc).split())}") from None
        installed.append(wheel_name(wheel.name))
    return installed
