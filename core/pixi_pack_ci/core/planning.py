"""From the user's options to the plans of a run: which packs, named how, with what in them,
decided before anything is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import PixiPackError, UsageError
from .executable import executable_suffix
from .lockfile import build_plan, load_lockfile, settle_pypi_sources
from .model import PackOptions, PackPlan
from .wheels import check_wheel_fits, find_python

if TYPE_CHECKING:
    from .plugin_manager import PluginManager


def _output_name(kind: str, platform: str, stem: str = "environment") -> str:
    if kind == "directory":
        return stem
    if kind == "executable":
        return stem + executable_suffix(platform)
    return stem + ".tar"


def plan_packs(options: PackOptions, plugins: PluginManager) -> list[PackPlan]:
    """Read the lockfile and decide every pack of this run, with plugins' changes applied."""
    loaded = load_lockfile(options.manifest_path)
    pairs = [(e, p) for e in options.environments for p in options.platforms]
    pairs = list(dict.fromkeys(pairs))
    if options.directory_only and options.create_executable:
        raise UsageError("--directory-only and --create-executable cannot be combined")
    if options.pixi_unpack_source and not options.create_executable:
        raise UsageError("--pixi-unpack-source needs --create-executable")
    kind = "directory" if options.directory_only else "executable" if options.create_executable else "tar"
    single = len(pairs) == 1 and options.output_dir is None
    if not single and options.output is not None:
        raise UsageError("-o/--output names a single pack; with several -e/-p use --output-dir")
    plans: list[PackPlan] = []
    for environment, platform in pairs:
        plan = build_plan(loaded, environment, platform)
        if any((p.environment, p.platform_name) == (environment, plan.platform_name) for p in plans):
            continue  # -p linux-64 and -p p1 can name the same lockfile platform
        plan.kind = kind  # type: ignore[assignment]
        if single:
            if options.output == "-":
                if kind == "directory":
                    raise UsageError("--directory-only cannot write to standard output")
                plan.output = None
            elif options.output is None:
                plan.output = Path(_output_name(kind, plan.platform)).absolute()
            else:
                output = Path(options.output)
                if kind == "executable":  # as pixi-pack: the extension follows the target platform
                    output = output.with_suffix(executable_suffix(plan.platform))
                plan.output = output.absolute()
        else:
            # The lockfile's platform name, so two names on one subdir get two files.
            name = _output_name(kind, plan.platform, f"{environment}-{plan.platform_name}")
            plan.output = ((options.output_dir or Path(".")) / name).absolute()
        plugins.modify_plan(plan, options)
        if options.ignore_pypi_non_wheel or options.no_build:
            settle_pypi_sources(plan, ignore=options.ignore_pypi_non_wheel)
        check_wheels(plan)
        plans.append(plan)
    return plans


def check_wheels(plan: PackPlan) -> None:
    """Every wheel must fit the environment's Python; checked before anything is downloaded."""
    if not plan.pypi:
        return
    python = find_python((a.record for a in plan.conda), plan.platform)
    if python is None:
        raise PixiPackError(
            f"environment {plan.environment!r} on {plan.platform} has PyPI wheels but no python conda package"
        )
    for wheel in plan.pypi:
        check_wheel_fits(wheel.file_name, python)
