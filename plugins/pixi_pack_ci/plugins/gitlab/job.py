"""What a GitLab job publishes: ``packs-<job>.json`` beside the packs, a dotenv report, and
collapsible log sections."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pixi_pack_ci.core import PackResult
from pixi_pack_ci.plugins.provenance.checksums import write_text_atomically

#: Where the template wants the dotenv report (``artifacts:reports:dotenv``); unset: none is written.
DOTENV_ENV = "PIXI_PACK_CI_DOTENV"


def job_slug(env: Mapping[str, str]) -> str:
    slug = env.get("CI_JOB_NAME_SLUG") or re.sub(r"[^a-z0-9]+", "-", env.get("CI_JOB_NAME", "").lower()).strip("-")
    return slug or env.get("CI_JOB_ID") or "local"


def packs_document(packs: Sequence[PackResult], report: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    attestation = report.get("attestation") or {}
    return {
        "job": {k: env.get(v, "") for k, v in (("name", "CI_JOB_NAME"), ("id", "CI_JOB_ID"), ("url", "CI_JOB_URL"))},
        "pipeline": {"id": env.get("CI_PIPELINE_ID", ""), "url": env.get("CI_PIPELINE_URL", "")},
        "commit": env.get("CI_COMMIT_SHA", ""),
        "packs": [
            {
                "environment": p.environment,
                "platform": p.platform,
                "platform_name": p.platform_name or p.platform,
                "path": p.path.name if p.path else "-",
                "sha256": p.sha256,
                "size": p.size,
                "packages": len(p.packages),
                "bundle": Path(p.path.name + ".sigstore.json").name if attestation and p.path else None,
            }
            for p in packs
        ],
        "attestation": {k: attestation[k] for k in ("keyless", "signer", "hashes") if k in attestation} or None,
    }


def write_packs_json(packs: Sequence[PackResult], report: Mapping[str, Any], env: Mapping[str, str]) -> Path | None:
    """``packs-<job>.json`` in the packs' folder: one per matrix job, so artifacts never collide."""
    folders = {p.path.parent for p in packs if p.path is not None}
    if len(folders) != 1:
        return None
    path = folders.pop() / f"packs-{job_slug(env)}.json"
    write_text_atomically(path, json.dumps(packs_document(packs, report, env), indent=2) + "\n")
    return path


def write_dotenv(packs: Sequence[PackResult], path: Path) -> None:
    """``PIXI_PACK_PATH``/``PIXI_PACK_SHA256`` of the first pack, ``PIXI_PACK_COUNT``: for ``needs:``
    consumers. With a matrix each job writes its own; GitLab keeps the last (use packs.json then)."""
    first = next((p for p in packs if p.path is not None), None)
    lines = [f"PIXI_PACK_COUNT={len(packs)}"]
    if first is not None and first.path is not None:
        lines += [f"PIXI_PACK_PATH={_relative(first.path)}", f"PIXI_PACK_SHA256={first.sha256 or ''}"]
    write_text_atomically(path, "\n".join(lines) + "\n")


def _relative(path: Path) -> str:
    try:
        return path.absolute().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


class LogSection:
    """A collapsible section of the GitLab job log (``section_start``/``section_end`` markers)."""

    def __init__(self, name: str, header: str, *, collapsed: bool = True) -> None:
        self.name = re.sub(r"[^a-zA-Z0-9_.-]", "_", name)
        self.header = header
        self.collapsed = collapsed

    def __enter__(self) -> LogSection:
        flag = "[collapsed=true]" if self.collapsed else ""
        sys.stderr.write(f"\x1b[0Ksection_start:{int(time.time())}:{self.name}{flag}\r\x1b[0K{self.header}\n")
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.write(f"\x1b[0Ksection_end:{int(time.time())}:{self.name}\r\x1b[0K\n")
        sys.stderr.flush()

    @staticmethod
    def line(text: str) -> None:
        sys.stderr.write(text + "\n")


def merge_packs_json(folder: Path) -> Path:
    """The collect job: every ``packs-*.json`` of the pipeline merged into ``packs.json``, and one
    ``SHA256SUMS`` for all packs (each matrix job's own would overwrite the others')."""
    documents = [json.loads(p.read_text()) for p in sorted(folder.glob("packs-*.json"))]
    packs = [pack for doc in documents for pack in doc.get("packs", [])]
    merged = {"jobs": [doc.get("job") for doc in documents], "packs": packs}
    out = folder / "packs.json"
    write_text_atomically(out, json.dumps(merged, indent=2) + "\n")
    sums = "".join(f"{p['sha256']}  {p['path']}\n" for p in packs if p.get("sha256"))
    write_text_atomically(folder / "SHA256SUMS", sums)
    return out


def dotenv_path(env: Mapping[str, str] = os.environ) -> Path | None:
    value = env.get(DOTENV_ENV)
    return Path(value) if value else None
