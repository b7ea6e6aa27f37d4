"""One PEP 517 wheel build, through ``uv build`` in an isolated build environment.

Why uv and not pypa ``build``: both drive the same backend through the same hooks and gave the
same wheel bytes for a hatchling project, but ``uv build`` took 1.5 s against 3.4 to 4.4 s for
``python -m build`` (which makes a venv and runs pip for every build); a real project with
several sources pays that per source. uv ships as a wheel for every system the action runs on.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PixiPackError
from .redact import redact_url, scrub

log = logging.getLogger("pixi_pack_ci")
DEFAULT_INDEX = "https://pypi.org/simple"


class BuildError(PixiPackError):
    """A build frontend or backend failed; the message names the package and the cause."""


@dataclass(frozen=True)
class BuildSettings:
    """Where build requirements come from: the environment's PyPI indexes in the lockfile
    (``indexes:``, the first is the default) and ``find-links:``, as pixi uses them."""

    indexes: list[str] = field(default_factory=lambda: [DEFAULT_INDEX])
    find_links: list[str] = field(default_factory=list)
    #: The interpreter the build runs with (and so a platform wheel's tags).
    python: str = sys.executable


def find_uv() -> str:
    try:
        from uv import find_uv_bin  # the uv wheel ships its binary beside this module

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise BuildError(
        "building PyPI sources into wheels needs uv (pip install uv); or pass --no-build or --ignore-pypi-non-wheel"
    )


def _command(source: Path, out_dir: Path, settings: BuildSettings) -> list[str]:
    # --no-config: the lockfile says where packages come from; a uv.toml on the packing machine
    # must not change which build requirements a CI run gets.
    argv = [find_uv(), "build", "--wheel", "--out-dir", str(out_dir), "--no-config", "--python", settings.python]
    for i, index in enumerate(settings.indexes or [DEFAULT_INDEX]):
        argv += ["--default-index" if i == 0 else "--index", index]
    for link in settings.find_links:
        argv += ["--find-links", link]
    return [*argv, str(source)]


def _cause(output: str) -> str:
    """The part of uv's report that says why, in one line. uv ends a failure with ``error:`` and
    one ``cause:`` line per level: for a failing backend, the backend's own last line (printed just
    before) says more than uv's causes; otherwise the innermost cause, with the URL it was fetching."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    if not errors:
        return lines[-1] if lines else "no output"
    first = errors[-1]
    causes = [line[len("cause:") :].strip() for line in lines[first + 1 :] if line.startswith("cause:")]
    if any("build backend returned an error" in c for c in causes) and first > 0:
        return f"the build backend failed: {lines[first - 1]}"
    fetching = next((c for c in causes if c.startswith("Failed to fetch")), None)
    if causes:
        return f"{fetching} ({causes[-1]})" if fetching and fetching != causes[-1] else causes[-1]
    return lines[first][len("error:") :].strip()


def build_wheel(source: Path, out_dir: Path, *, epoch: int, settings: BuildSettings, what: str) -> Path:
    """Build ``source`` (a project folder or an sdist file) into exactly one wheel in ``out_dir``.

    ``SOURCE_DATE_EPOCH`` makes the backends (hatchling, setuptools, flit-core) write the same
    zip timestamps every time, so the same source gives the same wheel bytes.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "UV_NO_PROGRESS": "1", "NO_COLOR": "1"}
    proc = subprocess.run(_command(source, out_dir, settings), capture_output=True, text=True, env=env, check=False)
    output = scrub(proc.stdout + proc.stderr)
    log.debug("uv build of %s:\n%s", what, output)
    if proc.returncode != 0:
        raise BuildError(f"could not build a wheel for {what}: {redact_url(_cause(output))} (-vv shows the build log)")
    wheels = sorted(out_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"building {what} gave {len(wheels)} wheels, not one")
    return wheels[0]
