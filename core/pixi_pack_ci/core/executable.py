"""Self-extracting packs: a small script, then the unpacker, then the archive.

Unix (``.sh``): the archive follows the script as raw bytes and is streamed with ``tail -c`` straight
into the unpacker's stdin, so memory stays flat and the file is only the header larger than the
tar (pixi-pack base64-encodes it, a third larger, and its PowerShell reads it whole: issues #192,
#304). Windows (``.ps1``): PowerShell parses a whole script file before running it, and raw bytes
would break the parse, so the payload is base64 inside a block comment (its alphabet cannot end
the comment) and is decoded with a streaming .NET ``FromBase64Transform`` from a file offset.
Offsets and sizes are written into the header as fixed-width numbers, so the same pack and
unpacker always give the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .errors import PixiPackError, UsageError
from .layout import PIXI_PACK_COMPAT_VERSION
from .platforms import is_windows
from .tarwriter import Writable

#: pixi-pack's release asset for each target platform (its ``download_pixi_unpack_executable``).
UNPACKER_TARGETS = {
    "linux-64": "x86_64-unknown-linux-musl",
    "linux-aarch64": "aarch64-unknown-linux-musl",
    "osx-64": "x86_64-apple-darwin",
    "osx-arm64": "aarch64-apple-darwin",
    "win-64": "x86_64-pc-windows-msvc",
    "win-arm64": "aarch64-pc-windows-msvc",
}
NO_UNPACKER = "none"
WIDTH = 20  # digits of every number in a header
B64_LINE = 76
B64_CHUNK = 57 * 1024 * 16  # bytes that encode to whole 76-char lines


def executable_suffix(platform: str) -> str:
    return ".ps1" if is_windows(platform) else ".sh"


def default_unpacker_url(platform: str) -> str:
    target = UNPACKER_TARGETS.get(platform)
    if target is None:
        raise UsageError(f"no pixi-unpack release exists for {platform}; pass --pixi-unpack-source PATH or none")
    ext = ".exe" if is_windows(platform) else ""
    return (
        f"https://github.com/Quantco/pixi-pack/releases/download/v{PIXI_PACK_COMPAT_VERSION}/pixi-unpack-{target}{ext}"
    )


def resolve_unpacker(source: str | None, platform: str, cache_dir: Path | None) -> Path | None:
    """The unpacker binary to embed: a local path, a URL (downloaded once into the cache), or none."""
    if source == NO_UNPACKER:
        return None
    source = source or default_unpacker_url(platform)
    if not source.startswith(("http://", "https://")):
        path = Path(source)
        if not path.is_file():
            raise UsageError(f"unpacker to embed does not exist: {path}")
        return path
    base = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pixi-pack-ci"
    target = base / "pixi-unpack" / hashlib.sha256(source.encode()).hexdigest()[:16] / source.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    import httpx  # only for this download: see FetchContext.client

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        headers = {"User-Agent": f"pixi-pack-ci/{__version__}"}
        with httpx.stream("GET", source, follow_redirects=True, timeout=300, headers=headers) as resp:
            if resp.status_code != 200:
                raise PixiPackError(f"could not download the unpacker from {source}: status {resp.status_code}")
            with tmp.open("wb") as fh:
                for chunk in resp.iter_bytes(1 << 20):
                    fh.write(chunk)
        os.replace(tmp, target)
    except httpx.HTTPError as exc:
        raise PixiPackError(f"could not download the unpacker from {source}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def b64_size(n: int) -> int:
    """Length of ``n`` bytes as base64 in CRLF-terminated 76-character lines."""
    if n == 0:
        return 0
    chars = 4 * ((n + 2) // 3)
    return chars + 2 * ((chars + B64_LINE - 1) // B64_LINE)


def _num(value: int) -> str:
    return str(value).zfill(WIDTH)


SH_TEMPLATE = r"""#!/usr/bin/env bash
# Self-extracting pixi-pack-ci pack of environment '@ENV@' for @PLATFORM@.
# It holds an uncompressed pixi-pack archive after this script; run it to create the environment:
#   bash @NAME@ [-o OUTPUT_DIR] [-e ENV_NAME] [-s SHELL]
set -euo pipefail
PACK_PLATFORM="@PLATFORM@"
HEADER_BYTES=@HEADER@
UNPACKER_BYTES=@UNPACKER@
ARCHIVE_BYTES=@ARCHIVE@

usage() {
  cat <<'USAGE'
Usage: bash THIS_FILE [OPTIONS]
  -o, --output-directory DIR   where the environment and activation script go (default: .)
  -e, --env-name NAME          name of the environment folder (default: env)
  -s, --shell SHELL            activation script flavour (bash, zsh, fish, ...)
  -h, --help                   show this help
Other options are passed to the unpacker.
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) here=linux-64 ;;
  Linux-aarch64|Linux-arm64) here=linux-aarch64 ;;
  Linux-ppc64le) here=linux-ppc64le ;;
  Darwin-x86_64) here=osx-64 ;;
  Darwin-arm64) here=osx-arm64 ;;
  *) here="$(uname -s)-$(uname -m)" ;;
esac
if [ "$here" != "$PACK_PLATFORM" ]; then
  echo "ERROR: this pack is for $PACK_PLATFORM, but this machine is $here" >&2
  exit 1
fi

header=$((10#$HEADER_BYTES)); unpacker=$((10#$UNPACKER_BYTES)); archive=$((10#$ARCHIVE_BYTES))
expected=$((header + unpacker + archive))
actual=$(wc -c < "$0" | tr -d ' ')
if [ "$actual" -ne "$expected" ]; then
  echo "ERROR: $0 is incomplete or damaged ($actual of $expected bytes); download it again" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pixi-pack-ci.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

if [ "$unpacker" -gt 0 ]; then
  # head stops reading early; tail's SIGPIPE is expected here, so the size is checked instead.
  (set +o pipefail; tail -c +$((header + 1)) "$0" | head -c "$unpacker" > "$tmp/pixi-unpack")
  if [ "$(wc -c < "$tmp/pixi-unpack" | tr -d ' ')" -ne "$unpacker" ]; then
    echo "ERROR: could not extract the unpacker from $0" >&2
    exit 1
  fi
  chmod +x "$tmp/pixi-unpack"
  unpack=("$tmp/pixi-unpack")
elif command -v pixi-unpack >/dev/null 2>&1; then
  unpack=(pixi-unpack)
elif command -v pixi-pack-ci >/dev/null 2>&1; then
  unpack=(pixi-pack-ci unpack)
else
  echo "ERROR: this pack has no unpacker inside and none is on PATH." >&2
  echo "Install one, then run this file again: pixi-unpack from https://github.com/Quantco/pixi-pack/releases" >&2
  echo "or 'pip install pixi-pack-ci'." >&2
  exit 1
fi

# The archive is the rest of this file; it is streamed, never held in memory or copied to disk.
if ! tail -c +$((header + unpacker + 1)) "$0" | "${unpack[@]}" "$@" -; then
  echo "ERROR: unpacking failed" >&2
  exit 1
fi
exit 0
"""

PS1_TEMPLATE = r"""# Self-extracting pixi-pack-ci pack of environment '@ENV@' for @PLATFORM@.
# Run: powershell -ExecutionPolicy Bypass -File @NAME@ [-o OUTPUT_DIR] [-e ENV_NAME] [-s SHELL]
$ErrorActionPreference = "Stop"
$PackPlatform = "@PLATFORM@"
$HeaderBytes = [long]"@HEADER@"
$UnpackerBytes = [long]"@UNPACKER@"
$ArchiveBytes = [long]"@ARCHIVE@"
$TrailerBytes = [long]"@TRAILER@"
$UnpackerRaw = [long]"@UNPACKER_RAW@"
$ArchiveRaw = [long]"@ARCHIVE_RAW@"

if ($args -contains "-h" -or $args -contains "--help") {
    Write-Output "Usage: powershell -File THIS_FILE [-o OUTPUT_DIR] [-e ENV_NAME] [-s SHELL]"
    exit 0
}
$here = switch ($env:PROCESSOR_ARCHITECTURE) { "AMD64" { "win-64" } "ARM64" { "win-arm64" } default { $_ } }
if ($here -ne $PackPlatform) {
    [Console]::Error.WriteLine("ERROR: this pack is for $PackPlatform, but this machine is $here")
    exit 1
}
$self = $MyInvocation.MyCommand.Path
$actual = (Get-Item -LiteralPath $self).Length
$expected = $HeaderBytes + $UnpackerBytes + $ArchiveBytes + $TrailerBytes
if ($actual -ne $expected) {
    [Console]::Error.WriteLine("ERROR: $self is incomplete or damaged ($actual of $expected bytes); download it again")
    exit 1
}

function Copy-Base64Range([string]$Path, [long]$Offset, [long]$Count, [long]$Expected, [string]$Target) {
    # Streams base64 from a file offset through FromBase64Transform: memory stays flat.
    $in = [IO.File]::OpenRead($Path)
    try {
        [void]$in.Seek($Offset, [IO.SeekOrigin]::Begin)
        $mode = [Security.Cryptography.FromBase64TransformMode]::IgnoreWhiteSpaces
        $transform = New-Object Security.Cryptography.FromBase64Transform($mode)
        $out = [IO.File]::Create($Target)
        $writeMode = [Security.Cryptography.CryptoStreamMode]::Write
        $decoder = New-Object Security.Cryptography.CryptoStream($out, $transform, $writeMode)
        try {
            $buffer = New-Object byte[] (1024 * 1024)
            $left = $Count
            while ($left -gt 0) {
                $n = $in.Read($buffer, 0, [int][Math]::Min($buffer.Length, $left))
                if ($n -le 0) { throw "unexpected end of $Path" }
                $decoder.Write($buffer, 0, $n)
                $left -= $n
            }
            $decoder.FlushFinalBlock()
        } finally { $decoder.Dispose() }
    } finally { $in.Dispose() }
    if ((Get-Item -LiteralPath $Target).Length -ne $Expected) { throw "could not extract $Target completely" }
}

$tmp = Join-Path ([IO.Path]::GetTempPath()) ("pixi-pack-ci-" + [guid]::NewGuid())
New-Item -ItemType Directory -Path $tmp | Out-Null
try {
    $archivePath = Join-Path $tmp "environment.tar"
    Copy-Base64Range $self ($HeaderBytes + $UnpackerBytes) $ArchiveBytes $ArchiveRaw $archivePath
    if ($UnpackerBytes -gt 0) {
        $unpack = Join-Path $tmp "pixi-unpack.exe"
        Copy-Base64Range $self $HeaderBytes $UnpackerBytes $UnpackerRaw $unpack
        & $unpack @args $archivePath
    } elseif (Get-Command pixi-unpack -ErrorAction SilentlyContinue) {
        & pixi-unpack @args $archivePath
    } elseif (Get-Command pixi-pack-ci -ErrorAction SilentlyContinue) {
        & pixi-pack-ci unpack @args $archivePath
    } else {
        [Console]::Error.WriteLine("ERROR: this pack has no unpacker inside and none is on PATH.")
        [Console]::Error.WriteLine("Install pixi-unpack or 'pip install pixi-pack-ci', then run this file again.")
        exit 1
    }
    exit $LASTEXITCODE
} finally {
    Remove-Item -Recurse -Force -LiteralPath $tmp -ErrorAction SilentlyContinue
}
exit 1
<#
"""
#: Closes the block comment that holds the payload (the last base64 line already ends with CRLF).
PS1_END = b"#>\r\n"


def _render(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template


def build_header(
    platform: str, environment: str, name: str, unpacker_size: int, archive_size: int
) -> tuple[bytes, int, int]:
    """The script header and the payload sizes as stored (raw on unix, base64 lines on Windows)."""
    windows = is_windows(platform)
    stored_unpacker = b64_size(unpacker_size) if windows else unpacker_size
    stored_archive = b64_size(archive_size) if windows else archive_size
    values = {
        "PLATFORM": platform,
        "ENV": environment.replace("'", ""),
        "NAME": name,
        "UNPACKER": _num(stored_unpacker),
        "ARCHIVE": _num(stored_archive),
        "TRAILER": _num(len(PS1_END) if windows else 0),
        "UNPACKER_RAW": _num(unpacker_size),
        "ARCHIVE_RAW": _num(archive_size),
    }
    template = PS1_TEMPLATE if windows else SH_TEMPLATE
    probe = _render(template, {**values, "HEADER": _num(0)})
    if windows:
        probe = probe.replace("\n", "\r\n")
    header_size = len(probe.encode("utf-8"))
    text = _render(template, {**values, "HEADER": _num(header_size)})
    if windows:
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    assert len(data) == header_size
    return data, stored_unpacker, stored_archive


class Base64LineSink:
    """Encodes what is written as base64 in CRLF-terminated 76-character lines, streaming."""

    def __init__(self, out: Writable) -> None:
        self.out = out
        self._pending = bytearray()

    def write(self, data: bytes | memoryview) -> int:
        self._pending += data
        whole = len(self._pending) - len(self._pending) % B64_CHUNK
        if whole:
            self._emit(bytes(self._pending[:whole]))
            del self._pending[:whole]
        return len(data)

    def _emit(self, chunk: bytes) -> None:
        encoded = base64.b64encode(chunk)
        lines = [encoded[i : i + B64_LINE] for i in range(0, len(encoded), B64_LINE)]
        self.out.write(b"\r\n".join(lines) + b"\r\n")

    def flush(self) -> None:
        if self._pending:
            self._emit(bytes(self._pending))
            self._pending.clear()
        self.out.flush()


class HashingSink:
    """A write-only stream that counts and hashes everything passed to the file below it."""

    def __init__(self, out: Writable, sha256: Any = None, size: int = 0) -> None:
        """``sha256`` and ``size``: to go on from bytes already hashed and written before."""
        self.out = out
        self.sha256 = sha256 if sha256 is not None else hashlib.sha256()
        self.size = size

    def write(self, data: bytes | memoryview) -> int:
        self.out.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def write_executable(
    sink: HashingSink,
    *,
    platform: str,
    environment: str,
    name: str,
    unpacker: Path | None,
    archive_bytes: int,
    write_archive: Callable[[Writable], None],
) -> None:
    """Header, unpacker, archive (and on Windows the comment's end), checked against the header's sizes."""
    unpacker_size = unpacker.stat().st_size if unpacker else 0
    header, stored_unpacker, stored_archive = build_header(platform, environment, name, unpacker_size, archive_bytes)
    sink.write(header)
    windows = is_windows(platform)
    payload: Writable = Base64LineSink(sink) if windows else sink
    if unpacker is not None:
        with unpacker.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                payload.write(chunk)
        payload.flush()
    write_archive(payload)
    payload.flush()
    if windows:
        sink.write(PS1_END)
    expected = len(header) + stored_unpacker + stored_archive + (len(PS1_END) if windows else 0)
    if sink.size != expected:
        raise PixiPackError(f"internal error: executable is {sink.size} bytes, its header says {expected}")
