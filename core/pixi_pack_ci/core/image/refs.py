"""What the user names: outputs, bases, registry references and target platforms.

References always name their registry (``ghcr.io/acme/app:1``, ``127.0.0.1:5000/app``): a bare
``ubuntu:24.04`` is refused rather than silently sent to Docker Hub, whose anonymous pull limits
break builds (``docker.io/library/ubuntu:24.04`` says it outright). Docker Hub's names are kept
as Docker normalises them (``index.docker.io`` → ``docker.io``, ``library/`` for official images);
:attr:`ImageRef.familiar` is the short form ``docker save`` writes into ``manifest.json``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageUsageError

#: Where the environment goes in the image: the prefix pixi's own container docs use.
DEFAULT_PREFIX = "/app/.pixi/envs/{env}"

#: conda subdir → (OCI architecture, variant). Nothing in the image runs at build time, so any of
#: them can be built on any host.
LINUX_PLATFORMS: dict[str, tuple[str, str | None]] = {
    "linux-64": ("amd64", None),
    "linux-aarch64": ("arm64", "v8"),
    "linux-ppc64le": ("ppc64le", None),
    "linux-s390x": ("s390x", None),
    "linux-armv7l": ("arm", "v7"),
    "linux-32": ("386", None),
}

#: Subdir prefixes of platforms that are packed but get no image.
_NOT_IMAGE_PLATFORMS = ("osx-", "win-", "emscripten-", "wasi-", "noarch")


def image_platforms(names: Iterable[str]) -> list[str]:
    """Those of ``names`` (platforms a project packs for) an image could be built for: all but
    macOS, Windows, WebAssembly and noarch, which have no container image. What is left is the
    ``image`` command's to judge (it refuses an unknown one in one line), so a CI adapter or build
    tool that packs every platform of a project builds images of the Linux ones only."""
    return [name for name in names if not name.startswith(_NOT_IMAGE_PLATFORMS)]


def is_image_target(text: str) -> bool:
    """Whether ``text`` names an image for ``verify``: ``oci://REGISTRY/REPO[:TAG|@DIGEST]`` (as
    verifiers name a pushed image) or an output of the ``image`` command."""
    return text.startswith(("oci://", "oci-layout:", "oci-archive:"))


_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
#: A registry: host name, IPv4 or [IPv6] address, optional port (distribution/reference's domain).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REGISTRY = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$")
#: Docker refuses longer names (registry and repository).
NAME_MAX = 255


def oci_platform(subdir: str) -> dict[str, str]:
    """The OCI ``platform`` of a conda subdir; other systems are refused in one line."""
    if subdir not in LINUX_PLATFORMS:
        raise ImageUsageError(
            f"cannot build a container image for {subdir}: images are Linux only ({', '.join(LINUX_PLATFORMS)})"
        )
    arch, variant = LINUX_PLATFORMS[subdir]
    platform = {"architecture": arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    return platform


@dataclass(frozen=True)
class ImageRef:
    """``REGISTRY/REPO[:TAG][@DIGEST]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag (``latest`` by default)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = self.name + (f":{self.tag}" if self.tag else "")
        return text + (f"@{self.digest}" if self.digest else "")

    @property
    def familiar(self) -> str:
        """``NAME:TAG`` as Docker shows it and ``docker save`` writes it in ``RepoTags``: without
        ``docker.io/``, and without ``library/`` for an official image (``ubuntu:24.04``)."""
        name = self.name
        if self.registry == "docker.io":
            name = self.repository
            if name.startswith("library/") and "/" not in name[len("library/") :]:
                name = name[len("library/") :]
        return f"{name}:{self.tag or 'latest'}"

    @property
    def api(self) -> str:
        """The registry's base URL: plain http only for this machine (as go-containerregistry does)."""
        host = self.registry.rsplit(":", 1)[0] if not self.registry.startswith("[") else self.registry[1:].split("]")[0]
        if self.registry == "docker.io":
            return "https://registry-1.docker.io"
        return f"{'http' if _loopback(host) else 'https'}://{self.registry}"


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_reference(text: str, *, what: str = "image reference") -> ImageRef:
    """Parse ``REGISTRY/REPO[:TAG][@sha256:…]``; one line naming the problem otherwise."""
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ImageUsageError(f"malformed {what} {text!r}: the digest must be sha256:<64 hex digits>")
    registry, _, path = rest.partition("/")
    if not path or not ("." in registry or ":" in registry or registry == "localhost"):
        hub = f"docker.io/{text}" if "/" in text else f"docker.io/library/{text}"
        raise ImageUsageError(f"malformed {what} {text!r}: name the registry, as in ghcr.io/acme/app:1 or {hub}")
    if not _REGISTRY.match(registry):
        raise ImageUsageError(f"malformed {what} {text!r}: invalid registry {registry!r} (HOST[:PORT])")
    if registry == "index.docker.io":  # Docker's old name for Docker Hub
        registry = "docker.io"
    tag = ""
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ImageUsageError(f"malformed {what} {text!r}: invalid tag {tag!r}")
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if not _REPO.match(path):
        raise ImageUsageError(f"malformed {what} {text!r}: invalid repository name {path!r} (lowercase, digits, ._-/)")
    if len(registry) + 1 + len(path) > NAME_MAX:
        raise ImageUsageError(f"malformed {what} {text!r}: the name is longer than {NAME_MAX} characters")
    return ImageRef(registry, path, tag or None, digest or None)


@dataclass(frozen=True)
class LayoutRef:
    """``oci-layout:DIR[:TAG]`` (a base) or an output folder."""

    path: Path
    tag: str | None = None


def _split_tag(value: str) -> tuple[str, str | None]:
    head, sep, tail = value.rpartition(":")
    if sep and head and _TAG.match(tail) and "/" not in tail:
        return head, tail
    return value, None


def parse_base(text: str) -> ImageRef | LayoutRef | None:
    """``scratch`` (None), ``oci-layout:DIR[:TAG]`` or a registry reference."""
    if text == "scratch":
        return None
    if text.startswith("oci-layout:"):
        path, tag = _split_tag(text[len("oci-layout:") :])
        if not path:
            raise ImageUsageError(f"malformed base {text!r}: oci-layout:DIR[:TAG]")
        return LayoutRef(Path(path), tag)
    return parse_reference(text, what="base")


@dataclass(frozen=True)
class Output:
    """``oci-layout:DIR[:NAME]`` or ``oci-archive:FILE.tar[:NAME]``. NAME is a tag (``v3``, default
    ``latest``: the layout's ``org.opencontainers.image.ref.name``, which ``skopeo``'s
    ``oci-archive:FILE:TAG`` and a base's ``oci-layout:DIR:TAG`` select by), or an image name with
    its registry (``ghcr.io/acme/app:1.2``), ``name``, that ``docker load`` and ``podman load`` give
    the image; ``tag`` is then the name's tag."""

    kind: str
    path: Path
    tag: str
    name: ImageRef | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}"


def _split_name(value: str) -> tuple[str, str | None]:
    """PATH and NAME of ``PATH[:NAME]``: NAME is everything after the first ``:`` that is not
    followed by ``/`` or ``\\`` (so ``C:\\`` and ``C:/`` stay in the path, and a NAME can hold a
    registry's port: ``app.tar:registry.example:5000/acme/app:1``)."""
    for i, char in enumerate(value):
        if char == ":" and i and value[i + 1 : i + 2] not in ("", "/", "\\"):
            return value[:i], value[i + 1 :]
    return value, None


def parse_output(text: str) -> Output:
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("oci-layout", "oci-archive") or not rest:
        raise ImageUsageError(f"unknown output {text!r}: use oci-layout:DIR or oci-archive:FILE.tar")
    path, name = _split_name(rest)
    ref = None
    if name is None or "/" not in name:
        if name is not None and not _TAG.match(name):
            raise ImageUsageError(
                f"--output {text}: {name!r} is neither a tag (v3) nor an image name with its registry "
                "(ghcr.io/acme/app:1.2, docker.io/acme/app:1)"
            )
    else:
        named = parse_reference(name, what="--output name")
        if named.digest:
            raise ImageUsageError(f"--output {text}: the name takes REGISTRY/REPO[:TAG]; the digest is the image's own")
        ref = ImageRef(named.registry, named.repository, named.tag or "latest")
    tag = ref.tag if ref is not None and ref.tag else name or "latest"
    output = Output(kind, Path(path).absolute(), tag, ref)
    # Checked before any work: the layout would only be refused once the image is built.
    if kind == "oci-layout" and output.path.exists() and not output.path.is_dir():
        raise ImageUsageError(f"--output {text}: {output.path} exists and is not a folder")
    return output
