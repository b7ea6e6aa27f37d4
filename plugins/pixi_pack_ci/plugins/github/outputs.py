"""The action's outputs and job summary, computed from the finished packs and the run's report."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pixi_pack_ci.core import ImageResult, PackResult, human_size
from pixi_pack_ci.plugins.provenance.checksums import hashes_value, subjects_for


def display_path(path: Path) -> str:
    """Relative to the working directory when inside it (what upload-artifact and attest expect)."""
    try:
        return path.absolute().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def action_outputs(packs: Sequence[PackResult], report: dict[str, Any]) -> dict[str, str]:
    files = [p for p in packs if p.path is not None]
    paths = [display_path(p.path) for p in files if p.path is not None]
    hashes = ""
    hashable = [(p.path, p.sha256) for p in files if p.path is not None and p.sha256 is not None]
    if hashable:
        _, subjects = subjects_for(hashable)
        hashes = hashes_value(subjects)
    attestation = report.get("attestation") or {}
    return {
        "pack-paths": "\n".join(paths),
        "pack-path": paths[0] if paths else "",
        "packs-json": json.dumps(
            [
                {
                    "environment": p.environment,
                    "platform": p.platform,
                    "platform_name": p.platform_name or p.platform,
                    "path": display_path(p.path) if p.path else "-",
                    "sha256": p.sha256,
                    "size": p.size,
                    "packages": len(p.packages),
                }
                for p in packs
            ]
        ),
        "hashes": hashes,
        "bundle-paths": "\n".join(display_path(Path(b)) for b in attestation.get("bundle_paths", [])),
        "attestation-url": str((attestation.get("github_attestation") or {}).get("url") or ""),
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def job_summary(packs: Sequence[PackResult], report: dict[str, Any]) -> str:
    """A markdown table of the packs, and what signed them."""
    lines = [
        "### 📦 pixi-pack-ci",
        "",
        "| pack | environment | platform | size | sha256 | packages |",
        "|---|---|---|---:|---|---:|",
    ]
    for p in packs:
        name = display_path(p.path) if p.path else "standard output"
        digest = f"`{p.sha256}`" if p.sha256 else "—"
        platform = _cell(p.platform_name or p.platform)
        cells = [f"`{_cell(name)}`", _cell(p.environment), platform, human_size(p.size), digest, str(len(p.packages))]
        lines.append("| " + " | ".join(cells) + " |")
    attestation = report.get("attestation")
    if attestation:
        how = "keyless (Sigstore)" if attestation.get("keyless") else "with a key"
        lines += ["", f"🔏 Signed {how} by `{_cell(str(attestation.get('signer')))}`: SLSA v1 provenance."]
        for bundle in attestation.get("bundle_paths", []):
            lines.append(f"- bundle `{_cell(display_path(Path(bundle)))}`")
        url = (attestation.get("github_attestation") or {}).get("url")
        if url:
            lines.append(f"- attestation: [{url}]({url})")
        repo = os.environ.get("GITHUB_REPOSITORY")
        if attestation.get("keyless") and repo and packs and packs[0].path:
            lines += [
                "",
                "Verify with:",
                "```",
                f"gh attestation verify {packs[0].path.name} --repo {repo}",
                "```",
            ]
    return "\n".join(lines) + "\n"


def image_outputs(images: Sequence[ImageResult]) -> dict[str, str]:
    """``image-digest`` (of the first image: one per run, several platforms make one index),
    ``image-ref`` (its first pushed ``REGISTRY/REPO@sha256:…``, empty when nothing was pushed) and
    ``image-refs`` (every push, newline-separated), for later steps (deploy, attest)."""
    refs = [f"{name}@{image.digest}" for image in images for name in image.names]
    return {
        "image-digest": images[0].digest if images else "",
        "image-ref": refs[0] if refs else "",
        "image-refs": "\n".join(refs),
    }


def image_summary(images: Sequence[ImageResult]) -> str:
    lines = ["### 🐳 pixi-pack-ci image", "", "| image | digest | platforms |", "|---|---|---|"]
    for image in images:
        where = [*image.names, *(display_path(p) for p in image.outputs)] or ["(not written)"]
        cell = "<br>".join(f"`{_cell(w)}`" for w in where)
        lines.append(f"| {cell} | `{image.digest}` | {', '.join(image.platforms)} |")
    return "\n".join(lines) + "\n"
