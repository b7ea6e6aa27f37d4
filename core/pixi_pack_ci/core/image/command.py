"""The ``image`` subcommand's flags and output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..plugin_manager import PluginManager
from ..redact import scrub
from .layers import DEFAULT_MAX_LAYERS
from .refs import DEFAULT_PREFIX


def add_image_parser(sub: Any, pm: PluginManager, add_common: Any) -> None:
    """``image``: its own flags, the common ones, and the plugins' (command ``"image"``)."""
    p: argparse.ArgumentParser = sub.add_parser("image", help="build an OCI image from pixi.lock or a pack (no daemon)")
    _source_flags(p)
    _config_flags(p)
    _layer_and_output_flags(p)
    add_common(p)
    pm.add_arguments(p, "image")


def _source_flags(p: argparse.ArgumentParser) -> None:
    """Where the environment comes from: pixi.lock (with pack's flags for it) or a pack."""
    p.add_argument(
        "manifest_path",
        nargs="?",
        default=".",
        metavar="MANIFEST_PATH",
        help="pixi.toml, pyproject.toml or project folder (default: .)",
    )
    p.add_argument("-e", "--environment", metavar="ENV", help="environment (default: default)")
    p.add_argument(
        "-p",
        "--platform",
        action="append",
        metavar="PLATFORM",
        help="Linux target (repeatable: several give an image index; default: this machine's Linux)",
    )
    p.add_argument("--from-pack", metavar="PACK|DIR", help="build from a pack file or folder instead of pixi.lock")
    p.add_argument("--use-cache", type=Path, metavar="DIR", help="download cache, as for pack, and a layer cache")
    p.add_argument("-c", "--config", type=Path, metavar="CONFIG", help="pixi/rattler config TOML, as for pack")
    p.add_argument("--auth-file", type=Path, metavar="FILE", help="rattler credentials JSON, as for pack")
    p.add_argument(
        "-i",
        "--inject",
        action="extend",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="local .conda, .tar.bz2 or .whl files, as for pack",
    )
    p.add_argument("--no-build", action="store_true", help="refuse PyPI entries that are not wheels, as for pack")
    p.add_argument("--ignore-pypi-non-wheel", action="store_true", help="leave such entries out, as for pack")


def _config_flags(p: argparse.ArgumentParser) -> None:
    """What the image is: base, prefix, activation, and the config's fields."""
    p.add_argument(
        "--base", metavar="REF", help="scratch, oci-layout:DIR[:TAG] or REGISTRY/REPO[:TAG][@DIGEST] (required)"
    )
    p.add_argument(
        "--prefix", metavar="PATH", help=f"where the environment lives in the image (default: {DEFAULT_PREFIX})"
    )
    p.add_argument(
        "--activation",
        choices=("auto", "env", "script"),
        default="auto",
        help="env: activation in the config's Env; script: an entrypoint script (auto: script "
        "only when packages ship activate.d scripts)",
    )
    p.add_argument("--entrypoint", metavar="CMD", help="entrypoint: JSON array or shell words")
    p.add_argument("--cmd", metavar="CMD", help="command: JSON array or shell words")
    p.add_argument("--workdir", metavar="DIR", help="working folder")
    p.add_argument("--user", metavar="UID[:GID]", help="user the image runs as")
    p.add_argument("--env", action="append", metavar="K=V", help="environment variable (repeatable)")
    p.add_argument("--label", action="append", metavar="K=V", help="config label (repeatable)")
    p.add_argument("--annotation", action="append", metavar="K=V", help="manifest annotation (repeatable)")


def _layer_and_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--add",
        action="append",
        metavar="SRC:DEST",
        help="files or a folder of this machine at DEST, in a layer after the environment's (repeatable)",
    )
    p.add_argument(
        "--layers",
        choices=("auto", "per-package", "single"),
        default="auto",
        help="auto: big or much-depended-on packages get own layers, the rest share one",
    )
    p.add_argument(
        "--max-layers",
        type=int,
        default=DEFAULT_MAX_LAYERS,
        metavar="N",
        help=f"environment layers at most (default: {DEFAULT_MAX_LAYERS}; 100 with the base)",
    )
    p.add_argument(
        "--compression", default="gzip", metavar="KIND", help="gzip[:LEVEL] (default gzip:6), zstd[:LEVEL], none"
    )
    p.add_argument(
        "--output",
        action="append",
        metavar="OUT",
        help="oci-layout:DIR[:NAME] or oci-archive:FILE.tar[:NAME]; NAME (what follows the path's first ':') is a "
        "tag, or REGISTRY/REPO[:TAG] for docker load and podman load to name the image (repeatable)",
    )
    p.add_argument("--push", action="append", metavar="REF", help="REGISTRY/REPO[:TAG] (repeatable)")
    p.add_argument("--registry-username", metavar="USER", help="for the --push registries (with the next flag)")
    p.add_argument("--registry-password-stdin", action="store_true", help="read that user's password from stdin")


def cmd_image(args: argparse.Namespace, pm: PluginManager) -> int:
    # Imported here: httpx and py-rattler are start-up that other commands and --help never need.
    from .build import run_image

    result = run_image(args, pm)
    if args.json:
        print(scrub(json.dumps(result, indent=2)))
        return 0
    for output in result["outputs"]:
        print(f"{output['kind']}:{output['path']}@{result['digest']}")
    for pushed in result["pushed"]:
        print(scrub(pushed["reference"]))
    if not args.quiet:
        layers = sum(len(i["layers"]) for i in result["images"])
        print(f"{len(result['images'])} image(s), {layers} layers, {result['compression']}", file=sys.stderr)
    return 0
