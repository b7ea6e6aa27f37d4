"""SHA256SUMS and the base64 ``hashes`` value: the one list of subjects every verifier starts from.

The text is exactly what ``sha256sum`` prints in text mode (``<hex>  <name>``, no ``*``), which is
what slsa-github-generator's ``base64-subjects`` input and ``actions/attest``'s
``subject-checksums`` input parse.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from pixi_pack_ci.core import atomic_output

from .errors import ProvenanceError
from .model import Subject

CHECKSUMS_NAME = "SHA256SUMS"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def subjects_for(files: Sequence[tuple[Path, str]]) -> tuple[Path, list[Subject]]:
    """Name each ``(path, sha256)`` relative to the folder the files share; return that folder too."""
    if not files:
        raise ProvenanceError("there is nothing to attest: no pack files were given")
    paths = [p.absolute() for p, _ in files]
    base = Path(os.path.commonpath([p.parent for p in paths]))
    subjects = []
    seen: set[str] = set()
    for path, (_, sha256) in zip(paths, files, strict=True):
        name = path.relative_to(base).as_posix()
        if "\n" in name or "\\" in name:
            raise ProvenanceError(
                f"cannot list {name!r} in {CHECKSUMS_NAME}: rename it without newlines or backslashes"
            )
        if name in seen:
            continue
        seen.add(name)
        subjects.append(Subject(name=name, sha256=sha256, path=path))
    return base, subjects


def checksums_text(subjects: Sequence[Subject]) -> str:
    return "".join(f"{s.sha256}  {s.name}\n" for s in subjects)


def hashes_value(subjects: Sequence[Subject]) -> str:
    """``sha256sum FILES | base64 -w0``: the input slsa-github-generator's generic workflow takes."""
    return base64.b64encode(checksums_text(subjects).encode()).decode("ascii")


def write_text_atomically(path: Path, text: str) -> None:
    """Write a small text file so that readers see the old content or the new, never a part."""
    with atomic_output(path) as out:
        out.write(text.encode("utf-8"))


def write_checksums(folder: Path, subjects: Sequence[Subject]) -> Path:
    path = folder / CHECKSUMS_NAME
    write_text_atomically(path, checksums_text(subjects))
    return path
