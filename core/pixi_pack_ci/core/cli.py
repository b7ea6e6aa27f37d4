"""The ``pixi-pack-ci`` command line: ``pack``, ``unpack``, ``inspect`` and plugin commands."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rattler.platform import Subdir

from . import __version__
from .activation import SHELLS, default_shell
from .errors import PixiPackError, UsageError
from .image.command import add_image_parser, cmd_image
from .model import PackOptions, UnpackOptions, human_size
from .options import add_pack_flags, options_values
from .plugin_manager import PluginManager, create_plugin_manager
from .redact import scrub

log = logging.getLogger("pixi_pack_ci")
PROG = "pixi-pack-ci"
COMPLETION_SHELLS = ("bash", "zsh", "fish", "powershell")


class _ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(f"{PROG}: {record.levelname.lower()}: {record.getMessage()}")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ScrubbingFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every other usage error
        raise UsageError(f"{self.prog}: {message}")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors; no progress")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")


def build_parser(pm: PluginManager) -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Pack pixi environments into pixi-pack compatible archives.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--disable-plugin", action="append", default=[], metavar="NAME", help="do not load this plugin (repeatable)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    pack = sub.add_parser("pack", help="pack a pixi.lock environment into an archive")
    pack.add_argument(
        "manifest_path",
        nargs="?",
        default=".",
        metavar="MANIFEST_PATH",
        help="pixi.toml, pyproject.toml or project folder (default: .); pixi.lock is read beside it",
    )
    add_pack_flags(pack)
    _add_common(pack)
    pm.add_arguments(pack, "pack")

    unpack = sub.add_parser("unpack", help="create an environment from a pack")
    unpack.add_argument(
        "pack",
        nargs="?",
        default="environment.tar",
        metavar="PACK",
        help="pack file, pack folder, or - for stdin (default: environment.tar)",
    )
    unpack.add_argument(
        "-o",
        "--output-directory",
        dest="output_directory",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where the env folder and activation script go (default: .)",
    )
    unpack.add_argument("-e", "--env-name", default="env", metavar="NAME", help="name of the env folder (default: env)")
    unpack.add_argument(
        "-s",
        "--shell",
        choices=sorted(SHELLS),
        default=default_shell(),
        help=f"activation script flavour (default: {default_shell()})",
    )
    unpack.add_argument("--force", action="store_true", help="replace an existing environment")
    _add_common(unpack)
    pm.add_arguments(unpack, "unpack")

    insp = sub.add_parser("inspect", help="show a pack's platform, packages and sizes")
    insp.add_argument("pack", metavar="PACK", type=Path)
    _add_common(insp)
    pm.add_arguments(insp, "inspect")

    add_image_parser(sub, pm, _add_common)

    _add_tool_commands(sub)
    pm.add_commands(sub)
    return parser


def _add_tool_commands(sub: Any) -> None:
    """The commands about the tool itself rather than packs: ``plugins`` and ``completion``."""
    plugins = sub.add_parser("plugins", help="list the plugins: loaded, blocked, or failed and why")
    _add_common(plugins)
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("-s", "--shell", required=True, choices=COMPLETION_SHELLS, help="the shell it is for")


def _complete_if_asked(parser: argparse.ArgumentParser) -> None:
    """A shell's completion script runs us with ``_ARGCOMPLETE`` set: argcomplete answers from
    ``parser`` and exits; otherwise nothing happens (and argcomplete is not even imported)."""
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)


def _print_json(data: Any) -> None:
    print(scrub(json.dumps(data, indent=2, sort_keys=False)))


def _cmd_pack(args: argparse.Namespace, pm: PluginManager) -> int:
    if args.json and args.output == "-":
        raise UsageError("--json cannot be combined with -o - (standard output carries the pack)")
    values = options_values(args)
    values["environments"] = values["environments"] or ["default"]
    values["platforms"] = values["platforms"] or [str(Subdir.current())]
    from .pack import run_pack  # here, as each command's pipeline: start-up the other commands never need

    options = PackOptions(manifest_path=Path(args.manifest_path), quiet=args.quiet, args=args, **values)  # type: ignore[arg-type]
    plans, results = run_pack(options, pm)
    if args.dry_run:
        if args.json:
            _print_json({"dry_run": True, "packs": [p.to_json() for p in plans]})
            return 0
        for plan in plans:
            print(
                f"{plan.environment} on {plan.platform_name} → {plan.output or 'stdout'}: "
                f"{len(plan.artifacts)} packages, {human_size(plan.download_size)} to download"
            )
            for a in plan.artifacts:
                print(scrub(f"  {a.describe():<50} {human_size(a.size or 0):>10}  {a.url}"))
            for source in plan.pypi_sources:
                print(f"  build: {source.name} from {source.source.describe() if source.source else source.location}")
            for note in plan.notes:
                print(f"  note: {note}")
        return 0
    if args.json:
        _print_json({"packs": [r.to_json() for r in results], **options.report})
    elif not args.quiet:
        for r in results:
            where = r.path if r.path else "standard output"
            digest = f", sha256 {r.sha256}" if r.sha256 else ""
            print(
                f"📦 Created pack at {where} ({human_size(r.size)}, {len(r.packages)} packages{digest})",
                file=sys.stderr if r.path is None else sys.stdout,
            )
    return 0


def _cmd_unpack(args: argparse.Namespace, pm: PluginManager) -> int:
    options = UnpackOptions(
        pack=args.pack, output_directory=args.output_directory, env_name=args.env_name, shell=args.shell,
        force=args.force, quiet=args.quiet, args=args,
    )  # fmt: skip
    pm.before_unpack(options.pack, options)
    from .unpack import run_unpack  # here: the installer (and asyncio) is start-up no other command needs

    result = run_unpack(options)
    pm.unpacked(result, options)
    if args.json:
        _print_json(result.to_json())
    elif not args.quiet:
        print(
            f"💫 Unpacked {len(result.packages)} packages to {result.prefix}; "
            f"activate with: source {result.activation_script}"
        )
    return 0


def _cmd_inspect(args: argparse.Namespace, pm: PluginManager) -> int:
    from .inspection import inspect_pack

    summary = inspect_pack(args.pack)
    if args.json:
        _print_json(summary)
        return 0
    print(
        f"platform: {summary['platform']}  format: {summary['format_version']}  "
        f"packages: {summary['package_count']}  size: {human_size(summary['size'])}"
    )
    for p in summary["packages"]:
        label = f"{p.get('name')}={p.get('version')}={p.get('build')}" if p["kind"] == "conda" else p["file_name"]
        print(f"  {p['kind']:<6} {label:<50} {human_size(p.get('size') or 0):>10}")
    return 0


def _cmd_completion(args: argparse.Namespace) -> int:
    """argcomplete's script for the shell: it runs this program to complete, from the very parser
    that parses (plugins' commands and flags included), so it cannot drift from the CLI."""
    from argcomplete.shell_integration import shellcode

    print(shellcode([PROG], shell=args.shell), end="")
    return 0


def _cmd_plugins(args: argparse.Namespace, pm: PluginManager) -> int:
    if args.json:
        _print_json([{"name": s.name, "state": s.state, "detail": s.detail} for s in pm.statuses])
        return 0
    for status in pm.statuses:
        print(f"{status.name:<20} {status.state:<8} {status.detail}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "?"
    pm: PluginManager | None = None
    try:
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--disable-plugin", action="append", default=[])
        pre.add_argument("-v", "--verbose", action="count", default=0)
        pre.add_argument("-q", "--quiet", action="store_true")
        known, _ = pre.parse_known_args(argv)
        _setup_logging(known.verbose, known.quiet)
        pm = create_plugin_manager(set(known.disable_plugin))
        parser = build_parser(pm)
        _complete_if_asked(parser)
        args = parser.parse_args(argv)
        command = args.command or "?"
        _setup_logging(getattr(args, "verbose", 0), getattr(args, "quiet", False))
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        if args.command == "pack":
            return _cmd_pack(args, pm)
        if args.command == "unpack":
            return _cmd_unpack(args, pm)
        if args.command == "inspect":
            return _cmd_inspect(args, pm)
        if args.command == "image":
            return cmd_image(args, pm)
        if args.command == "plugins":
            return _cmd_plugins(args, pm)
        if args.command == "completion":
            return _cmd_completion(args)
        handler = getattr(args, "handler", None)
        if handler is None:
            raise UsageError(f"command {args.command!r} has no handler")
        return int(handler(args))
    except PixiPackError as exc:
        if pm is not None:
            try:
                pm.report_error(exc, command)
            except Exception as hook_exc:
                log.warning("a plugin failed while reporting the error: %s", hook_exc)
        print(scrub(f"{PROG}: error: {' '.join(str(exc).split())}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`); nothing useful left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("PIXI_PACK_CI_DEBUG"):
            raise
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(
            scrub(f"{PROG}: internal error: {detail} (set PIXI_PACK_CI_DEBUG=1 for a traceback and please report it)"),
            file=sys.stderr,
        )
        return 1


def run() -> NoReturn:
    """The ``pixi-pack-ci`` command: :func:`main`, then an exit that skips the interpreter's
    finalisation. py-rattler's native threads now and then crash that finalisation (SIGSEGV
    after the run's result was printed: seen about once in 500 runs, after rattler.install and
    RepoDataRecord.from_package_archive), which would turn a finished run's exit code into -11.
    Every output is written and closed by now; only the standard streams need flushing."""
    # httpx imports its own command line (click, rich, pygments: a tenth of a second) whenever those
    # are installed; this command never runs it, so httpx gets its stand-in.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
