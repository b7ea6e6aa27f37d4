"""``--inject``: add local conda packages and wheels to a pack, validated against the locked ones.

A built-in plugin on ``pixi_pack_ci_modify_plan``: third-party plugins can add artifacts the same way.
"""

from __future__ import annotations

from pathlib import Path

import rattler

from .errors import PixiPackError, UsageError
from .hookspecs import hookimpl
from .model import CondaArtifact, PackOptions, PackPlan, PypiArtifact
from .records import records_from_dicts, repodata_entry
from .wheels import canonical, wheel_name

CONDA_SUFFIXES = (".conda", ".tar.bz2")


def conda_artifact_from_file(path: Path) -> CondaArtifact:
    """An artifact whose record comes from the package's own ``info/index.json``."""
    from .rattler_loop import run_rattler  # here: only --inject needs it, and every command loads this plugin

    try:
        record = run_rattler(rattler.RepoDataRecord.from_package_archive(path))
    except Exception as exc:
        raise PixiPackError(f"cannot read conda package {path}: {' '.join(str(exc).split())}") from None
    data = repodata_entry(record)
    return CondaArtifact(
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        subdir=record.subdir,
        file_name=path.name,
        url=path.resolve().as_uri(),
        sha256=data.get("sha256"),
        md5=data.get("md5"),
        size=record.size,
        record=data,
        origin="inject",
    )


def wheel_artifact_from_file(path: Path) -> PypiArtifact:
    import hashlib

    from packaging.utils import parse_wheel_filename

    name = wheel_name(path.name)
    _, version, _, _ = parse_wheel_filename(path.name)
    return PypiArtifact(
        name=name,
        version=str(version),
        file_name=path.name,
        url=path.resolve().as_uri(),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        size=path.stat().st_size,
        origin="inject",
    )


def validate_conda(plan: PackPlan) -> None:
    """pixi-pack's check: every dependency and constraint is satisfied inside the pack (virtual ``__`` ignored)."""
    records = records_from_dicts((a.file_name, a.record) for a in plan.conda)
    try:
        rattler.PackageRecord.validate(list(records))
    except Exception as exc:
        raise PixiPackError(" ".join(str(exc).split())) from None


def _replace_pypi_entry(plan: PackPlan, wheel: PypiArtifact) -> None:
    """An injected wheel takes the place of the locked entry of the same normalized name, be it a
    wheel or a folder, sdist or git entry (the hatch builder injects the project's own wheel for
    the ``pypi: .`` entry pixi writes)."""
    key = canonical(wheel.name)
    for old in [w for w in plan.pypi if canonical(w.name) == key]:
        plan.notes.append(f"injected wheel {wheel.describe()} replaces locked {old.describe()}")
    for source in [s for s in plan.pypi_sources if canonical(s.name) == key]:
        plan.notes.append(f"injected wheel {wheel.describe()} replaces locked {source.describe()}")
    plan.pypi = [w for w in plan.pypi if canonical(w.name) != key]
    plan.pypi_sources = [s for s in plan.pypi_sources if canonical(s.name) != key]
    plan.pypi.append(wheel)


def inject_files(plan: PackPlan, files: list[Path]) -> None:
    conda_added = False
    for path in files:
        if not path.is_file():
            raise UsageError(f"file to inject does not exist: {path}")
        if path.name.endswith(CONDA_SUFFIXES):
            artifact = conda_artifact_from_file(path)
            replaced = [a for a in plan.conda if a.name == artifact.name]
            plan.conda = [a for a in plan.conda if a.name != artifact.name]
            plan.conda.append(artifact)
            conda_added = True
            for old in replaced:
                plan.notes.append(f"injected {artifact.describe()} replaces locked {old.describe()}")
        elif path.name.endswith(".whl"):
            wheel = wheel_artifact_from_file(path)
            clash = next((a for a in plan.conda if canonical(a.name) == canonical(wheel.name)), None)
            if clash is not None:
                raise PixiPackError(
                    f"injected wheel {path.name} clashes with conda package {clash.describe()}; both would install "
                    f"{wheel.name}"
                )
            _replace_pypi_entry(plan, wheel)
            plan.notes.append(
                f"the dependencies of injected wheel {path.name} were not checked against the environment"
            )
        else:
            raise UsageError(f"cannot inject {path}: only .conda, .tar.bz2 and .whl files can be injected")
    if conda_added:
        validate_conda(plan)


class InjectPlugin:
    @hookimpl(trylast=True)
    def pixi_pack_ci_modify_plan(self, plan: PackPlan, options: PackOptions) -> None:
        if options.inject:
            inject_files(plan, options.inject)
