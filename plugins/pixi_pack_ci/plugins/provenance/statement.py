"""The in-toto Statement v1 with an SLSA v1 provenance predicate, built from a CI description."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pixi_pack_ci.core import PackOptions, __version__

from .checksums import file_sha256
from .model import IN_TOTO_STATEMENT_V1, LOCAL_BUILD_TYPE, SLSA_PROVENANCE_V1, BuildDescription, Subject

_TOKEN_SEGMENT = re.compile(r"/t/[^/]+(?=/|$)")
_SECRET_QUERY = re.compile(r"(token|access_token|auth|key|sig|signature|password|x-amz-[a-z-]+)$", re.IGNORECASE)


def public_url(url: str) -> str | None:
    """``url`` without user-info, conda tokens or secret query values; ``None`` for local files.

    Provenance is published, so a credential must not survive even as ``***``; a local path says
    nothing a verifier can use, and the digest identifies the file anyway.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = _TOKEN_SEGMENT.sub("", parts.path)
    query = "&".join(p for p in parts.query.split("&") if p and not _SECRET_QUERY.match(p.split("=", 1)[0]))
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _relative(path: Path) -> str:
    try:
        return path.absolute().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name


def lockfile_dependency(lockfile: Path) -> dict[str, Any]:
    return {"name": _relative(lockfile), "digest": {"sha256": file_sha256(lockfile)}}


def package_dependencies(packages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One resource descriptor per distinct packed file (conda package or wheel)."""
    seen: set[tuple[str, str | None]] = set()
    deps: list[dict[str, Any]] = []
    for pkg in packages:
        key = (pkg["file_name"], pkg.get("sha256"))
        if key in seen:
            continue
        seen.add(key)
        dep: dict[str, Any] = {"name": pkg["file_name"]}
        uri = public_url(pkg.get("url") or "")
        if uri:
            dep["uri"] = uri
        if pkg.get("sha256"):
            dep["digest"] = {"sha256": pkg["sha256"]}
        deps.append(dep)
        built = pkg.get("built_from")
        if isinstance(built, dict):  # a wheel built at pack time: the source it came from, too
            dep["annotations"] = {"builtFrom": built.get("source"), "sourceDigest": built.get("digest")}
            source: dict[str, Any] = {"name": f"{pkg['name']} source: {built.get('location')}"}
            source_uri = _source_uri(str(built.get("location", "")))
            if source_uri:
                source["uri"] = source_uri
            source["digest"] = dict(built.get("digest") or {})
            deps.append(source)
    return deps


def _source_uri(location: str) -> str | None:
    """A git or sdist location as a verifier can fetch it (``git+https://host/repo@<commit>``),
    without credentials; ``None`` for a folder of the project."""
    if location.startswith("git+"):
        rest, _, commit = location[len("git+") :].partition("#")
        public = public_url(rest.split("?", 1)[0])
        return f"git+{public}@{commit}" if public and commit else None
    return public_url(location.removeprefix("direct+"))


def pack_inputs(options: PackOptions) -> dict[str, Any]:
    """The flags that shaped the packs, as ``externalParameters.pixiPack``."""
    return {
        "manifestPath": _relative(options.manifest_path),
        "environments": list(options.environments),
        "platforms": list(options.platforms),
        "createExecutable": options.create_executable,
        "directoryOnly": options.directory_only,
        "ignorePypiNonWheel": options.ignore_pypi_non_wheel,
        "inject": [p.name for p in options.inject],
        "pixiPackCiVersion": __version__,
    }


def local_build_description() -> BuildDescription:
    """The generic description used when no CI plugin recognises where we run."""
    return BuildDescription(
        build_type=LOCAL_BUILD_TYPE,
        builder_id="urn:pixi-pack-ci:local",
        external_parameters={},
        builder_extra={"version": {"pixi-pack-ci": __version__}},
        system="local",
    )


def build_statement(
    subjects: Sequence[Subject],
    build: BuildDescription,
    inputs: dict[str, Any],
    dependencies: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    build_definition: dict[str, Any] = {
        "buildType": build.build_type,
        "externalParameters": {**build.external_parameters, "pixiPack": inputs},
    }
    if build.internal_parameters:
        build_definition["internalParameters"] = build.internal_parameters
    build_definition["resolvedDependencies"] = [*build.resolved_dependencies, *dependencies]
    run_details: dict[str, Any] = {"builder": {"id": build.builder_id, **build.builder_extra}}
    if build.invocation_id:
        run_details["metadata"] = {"invocationId": build.invocation_id}
    return {
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": [{"name": s.name, "digest": {"sha256": s.sha256}} for s in subjects],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {"buildDefinition": build_definition, "runDetails": run_details},
    }


def encode_statement(statement: dict[str, Any]) -> bytes:
    """The exact bytes that get signed (compact JSON; the DSSE envelope carries them verbatim)."""
    return json.dumps(statement, separators=(",", ":"), ensure_ascii=False).encode()
