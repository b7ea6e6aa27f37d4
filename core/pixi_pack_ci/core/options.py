"""The one table of ``pack`` options.

The CLI's ``pack`` flags are made from :data:`PACK_FLAGS`, and :class:`~.model.PackOptions` is
filled from it. Each entry also says under which name the integrations offer it (the GitHub
Action's input, the GitLab template's input, the hatch setting); a test checks them against
``action.yml``, ``gitlab/pixi-pack.yml`` and the hatch settings, so a new flag that one of them
lacks fails the suite instead of going unnoticed. The core only names them here as data.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rattler.platform import Subdir

FlagKind = Literal["switch", "text", "path", "paths", "texts"]


@dataclass(frozen=True)
class PackFlag:
    """One ``pack`` option and where it is offered."""

    #: The long flag; its ``dest`` is the PackOptions field of the same name unless given.
    flag: str
    kind: FlagKind
    help: str
    dest: str = ""
    short: str = ""
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    #: The GitHub Action's input, the GitLab template's input and the hatch setting that offer
    #: it; "" where it is not offered (and the comment in the table says why).
    action: str = ""
    gitlab: str = ""
    hatch: str = ""

    @property
    def field(self) -> str:
        return self.dest or self.flag.lstrip("-").replace("-", "_")


PACK_FLAGS: tuple[PackFlag, ...] = (
    # -e/-p: one matrix job per pair in GitLab; hatch's "versions" of the target are environments.
    PackFlag("--environment", "texts", "environment to pack (repeatable; default: default)", dest="environments",
             short="-e", metavar="ENV", action="environments", gitlab="environments", hatch="environments"),
    PackFlag("--platform", "texts", "target platform: a platform name of the lockfile or a subdir (repeatable; "
             f"default: this machine's, {Subdir.current()})", dest="platforms", short="-p", metavar="PLATFORM",
             action="platforms", gitlab="platforms", hatch="platforms"),
    # The integrations always write several packs into a folder of their own: -o is CLI-only.
    PackFlag("--output", "text", "pack file or folder (default: environment.tar); - writes the tar to stdout",
             short="-o", aliases=("--output-file",), metavar="OUTPUT"),
    PackFlag("--output-dir", "path", "folder for several packs, named <env>-<platform>.tar", metavar="DIR",
             action="output-dir", gitlab="output-dir"),
    # The integrations keep their cache themselves (actions/cache, GitLab cache, a hatch folder).
    PackFlag("--use-cache", "path", "download cache shared between runs (pixi-pack layout, verified)",
             dest="cache_dir", metavar="DIR", action="cache-dir", hatch="cache-dir"),
    PackFlag("--config", "path", "pixi/rattler config TOML ([mirrors], [concurrency])", dest="config_path",
             short="-c", metavar="CONFIG", action="config", gitlab="config"),
    PackFlag("--auth-file", "path", "rattler credentials JSON (default: $RATTLER_AUTH_FILE)", metavar="FILE",
             action="auth-file"),
    PackFlag("--directory-only", "switch", "write the pack as a folder, not a tar", action="directory-only"),
    PackFlag("--create-executable", "switch",
             "write a self-extracting .sh (unix targets) or .ps1 (Windows targets) instead of a tar",
             action="create-executable", gitlab="create-executable", hatch="create-executable"),
    PackFlag("--pixi-unpack-source", "text",
             "unpacker to embed in the executable (default: the matching pixi-unpack release; none: use PATH)",
             metavar="PATH|URL|none", action="pixi-unpack-source"),
    PackFlag("--inject", "paths", "add local .conda, .tar.bz2 or .whl files to the pack (several per flag, or "
             "repeat the flag; checked against the environment); put MANIFEST_PATH before -i", short="-i",
             metavar="FILE", action="inject", gitlab="inject"),
    PackFlag("--ignore-pypi-non-wheel", "switch",
             "leave out PyPI entries that are not wheels (named in output) instead of building them",
             action="ignore-pypi-non-wheel", gitlab="ignore-pypi-non-wheel", hatch="ignore-pypi-non-wheel"),
    PackFlag("--no-build", "switch",
             "refuse PyPI entries that are not wheels instead of building them (no build backend runs)",
             action="no-build", gitlab="no-build", hatch="no-build"),
    PackFlag("--dry-run", "switch", "show what would be packed; download nothing"),
)  # fmt: skip


def add_pack_flags(parser: argparse.ArgumentParser) -> None:
    """The ``pack`` flags of :data:`PACK_FLAGS` (defaults are PackOptions' own)."""
    for f in PACK_FLAGS:
        names = [n for n in (f.short, f.flag, *f.aliases) if n]
        if f.kind == "switch":
            parser.add_argument(*names, dest=f.field, action="store_true", help=f.help)
        elif f.kind == "texts":
            parser.add_argument(*names, dest=f.field, action="append", metavar=f.metavar, help=f.help)
        elif f.kind == "paths":  # several per flag, as pixi-pack's -i a b
            parser.add_argument(
                *names, dest=f.field, action="extend", nargs="+", type=Path, default=[], metavar=f.metavar, help=f.help
            )
        else:
            kind = Path if f.kind == "path" else str
            parser.add_argument(*names, dest=f.field, type=kind, metavar=f.metavar, help=f.help)


def options_values(args: argparse.Namespace) -> dict[str, object]:
    """PackOptions' fields from the parsed flags of the table."""
    return {f.field: getattr(args, f.field) for f in PACK_FLAGS}
