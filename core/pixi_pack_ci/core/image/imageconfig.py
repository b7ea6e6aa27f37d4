"""The image config and manifest: the base's config with the environment's activation, the
user's entrypoint, command, working folder, user, environment and labels, and the layers."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from .blobs import CONFIG, MANIFEST, Descriptor
from .errors import ImageUsageError


@dataclass
class ConfigSettings:
    """What the user set (None: keep the base's)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    workdir: str | None = None
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def parse_command(text: str | None, flag: str) -> list[str] | None:
    """A JSON array (``["python", "-m", "app"]``) or shell words (``python -m app``)."""
    if text is None:
        return None
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ImageUsageError(f"{flag} {text!r}: a JSON array must hold strings only")
        return value
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ImageUsageError(f"{flag} {text!r}: {exc}") from None


def parse_pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ImageUsageError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def timestamp(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def make_config(
    base: dict[str, Any],
    platform: dict[str, str],
    env: list[str],
    settings: ConfigSettings,
    entrypoint_script: str | None,
    diff_ids: list[str],
    history: list[dict[str, Any]],
    created: str,
) -> dict[str, Any]:
    """The config: Docker's rule that a new entrypoint drops the base's command, and the
    activation script (``--activation script``) in front of whatever runs."""
    inherited = dict(base.get("config") or {})
    entrypoint = settings.entrypoint if settings.entrypoint is not None else inherited.get("Entrypoint")
    cmd = (
        settings.cmd
        if settings.cmd is not None
        else (None if settings.entrypoint is not None else inherited.get("Cmd"))
    )
    if entrypoint_script is not None:
        entrypoint = [entrypoint_script, *(entrypoint or [])]
    merged_env = dict(item.split("=", 1) for item in env)
    merged_env.update(settings.env)
    config = {k: v for k, v in inherited.items() if k not in ("Entrypoint", "Cmd", "Env", "Labels")}
    config["Env"] = [f"{k}={v}" for k, v in merged_env.items()]
    if entrypoint:
        config["Entrypoint"] = entrypoint
    if cmd:
        config["Cmd"] = cmd
    if settings.workdir is not None:
        config["WorkingDir"] = settings.workdir
    if settings.user is not None:
        config["User"] = settings.user
    labels = {**(inherited.get("Labels") or {}), **settings.labels}
    if labels:
        config["Labels"] = labels
    return {
        **platform,
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [*(base.get("rootfs") or {}).get("diff_ids", []), *diff_ids]},
        "history": [*(base.get("history") or []), *history],
    }


def make_manifest(config: Descriptor, layers: list[Descriptor], annotations: dict[str, str]) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": Descriptor(CONFIG, config.digest, config.size).to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = annotations
    return manifest
