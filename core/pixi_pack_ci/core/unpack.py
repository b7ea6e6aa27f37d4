"""``unpack``: pack → environment, atomically.

:mod:`.extract` reads and checks the pack (the security boundary), :mod:`.install` builds the
environment in a hidden sibling of its target for the target's final path; it is renamed into
place only when whole, and the activation script written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from rattler.platform import Subdir

from .activation import SHELLS, write_activation_script
from .atomic import remove_stale_partials, temp_prefix
from .errors import TargetExistsError, UnpackError
from .extract import load_records, pack_wheels, read_metadata, read_pack
from .install import install_environment
from .model import UnpackOptions, UnpackResult


def _move_into_place(staging: Path, prefix: Path, aside: Path) -> None:
    """Put the finished environment at ``prefix``; one that is there already (empty, or --force)
    is moved aside only now, and back if the new one cannot take its place."""
    moved_aside = False
    try:
        if prefix.exists() or prefix.is_symlink():
            os.rename(prefix, aside)
            moved_aside = True
        os.rename(staging, prefix)
    except OSError as exc:
        if moved_aside:
            with contextlib.suppress(OSError):
                os.rename(aside, prefix)
        raise UnpackError(f"cannot move the environment into {prefix}: {exc.strerror}") from None


def _remove_work_folder(work: Path, patience: float = 10.0) -> None:
    """Delete the work folder, again while something still writes into it: when one package fails,
    ``rattler.install`` returns while its tasks for the other packages go on extracting into the
    cache for a moment, and a single ``rmtree`` left their folders behind."""
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(work, ignore_errors=True)
        if not os.path.lexists(work) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _check_target(options: UnpackOptions) -> tuple[Path, Path, Path]:
    """``(output folder, prefix, activation script)``, refusing what cannot be written."""
    if options.shell not in SHELLS:
        raise UnpackError(f"unknown shell {options.shell!r}; choose one of: {', '.join(SHELLS)}")
    env_name = options.env_name
    if not env_name or "/" in env_name or "\\" in env_name or env_name in (".", ".."):
        raise UnpackError(f"invalid environment name {env_name!r}")
    output_dir = options.output_directory.absolute()
    prefix = output_dir / env_name
    if prefix.exists() and not options.force and (not prefix.is_dir() or any(prefix.iterdir())):
        raise TargetExistsError(f"{prefix} already exists; pass --force to replace it")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnpackError(f"cannot create output directory {output_dir}: {exc.strerror}") from None
    return output_dir, prefix, output_dir / f"activate.{SHELLS[options.shell]}"


def run_unpack(options: UnpackOptions) -> UnpackResult:
    output_dir, prefix, script = _check_target(options)
    # The environment is built in a hidden work folder beside it and moved into place when complete:
    # a failed or killed unpack leaves no half-installed prefix, and --force keeps the old one until
    # the new one is whole. The folder names this process, so the next unpack removes what a killed
    # one left.
    remove_stale_partials(prefix)
    work = Path(tempfile.mkdtemp(prefix=temp_prefix(prefix), suffix=".partial", dir=output_dir))
    try:
        pack = read_pack(options.pack, work / "pack")
        metadata = read_metadata(pack.root)
        current = str(Subdir.current())
        if metadata.platform != current:
            raise UnpackError(f"the pack was created for {metadata.platform} but this machine is {current}")
        records = load_records(pack.root, pack.digests)
        staging = install_environment(
            records, pack_wheels(pack.root), work, prefix, metadata.platform,
            delete_archives=pack.disposable, quiet=options.quiet,
        )  # fmt: skip
        _move_into_place(staging, prefix, work / "replaced")
        write_activation_script(prefix, script, options.shell, metadata.platform)
    finally:
        _remove_work_folder(work)
    names = tuple(sorted(f"{r.name.normalized}={r.version}={r.build}" for r in records))
    return UnpackResult(
        prefix=prefix, activation_script=script, platform=metadata.platform, packages=names, shell=options.shell
    )
