"""A deterministic tar writer whose bytes match pixi-pack's (tar-rs, ``HeaderMode::Deterministic``).

Hand-written on purpose: Python's ``tarfile`` writes the checksum as ``"012345\\0 "``, appends ``/``
to directory names and pads the archive to 10 KiB records, so its output can never be
byte-identical to a pack made by pixi-pack from the same lockfile. Rules followed here:

* GNU headers (magic ``"ustar "``, version ``" \\0"``), mtime 1153704088, uid/gid 0, empty
  user/group names, device numbers ``"0000000\\0"``.
* mode 0o755 for directories and files with the user-exec bit, else 0o644.
* numeric fields zero-padded octal with a trailing NUL; the checksum is 7 digits and a NUL.
* names longer than 100 bytes get a ``././@LongLink`` (type ``L``, mode 0644, mtime 0) entry first.
* the archive ends with exactly two zero blocks.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol


class Writable(Protocol):
    """Where archive bytes go: a file, standard output, or an encoding/hashing sink."""

    def write(self, data: bytes | memoryview, /) -> int: ...

    def flush(self) -> None: ...


BLOCK = 512
DETERMINISTIC_MTIME = 1153704088
COPY_CHUNK = 1 << 20


def _octal(value: int, width: int) -> bytes:
    """Zero-padded octal in ``width - 1`` digits and a NUL; GNU base-256 when it does not fit."""
    digits = width - 1
    if value < 8**digits:
        return format(value, f"0{digits}o").encode() + b"\0"
    # GNU extension for sizes of 8 GiB and more: high bit set, big-endian binary.
    out = bytearray(value.to_bytes(width, "big"))
    out[0] |= 0x80
    return bytes(out)


def _header(name: bytes, *, size: int, mode: int, typeflag: bytes, mtime: int, devices: bool) -> bytes:
    h = bytearray(BLOCK)
    h[0 : len(name)] = name
    h[100:108] = _octal(mode, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(mtime, 12)
    h[156:157] = typeflag
    h[257:263] = b"ustar "
    h[263:265] = b" \0"
    if devices:
        h[329:337] = _octal(0, 8)
        h[337:345] = _octal(0, 8)
    h[148:156] = b" " * 8
    checksum = sum(h)
    h[148:156] = format(checksum, "07o").encode() + b"\0"
    return bytes(h)


class DeterministicTarWriter:
    """Writes entries in the order given; callers sort them (and hash the output if they need to)."""

    def __init__(self, out: Writable) -> None:
        self.out = out
        self._buf = bytearray(COPY_CHUNK)
        #: Bytes written so far: the offset of the next byte in the archive.
        self.position = 0

    def _write(self, data: bytes | memoryview) -> None:
        self.out.write(data)
        self.position += len(data)

    def _name(self, arcname: str) -> bytes:
        name = arcname.encode("utf-8")
        if len(name) > 100:
            long_header = _header(
                b"././@LongLink", size=len(name) + 1, mode=0o644, typeflag=b"L", mtime=0, devices=False
            )
            self._write(long_header)
            data = name + b"\0"
            self._write(data + b"\0" * (-len(data) % BLOCK))
            name = name[:100]
        return name

    def add_directory(self, arcname: str) -> None:
        name = self._name(arcname)
        self._write(_header(name, size=0, mode=0o755, typeflag=b"5", mtime=DETERMINISTIC_MTIME, devices=True))

    def add_bytes(self, arcname: str, data: bytes, *, executable: bool = False) -> None:
        name = self._name(arcname)
        mode = 0o755 if executable else 0o644
        self._write(_header(name, size=len(data), mode=mode, typeflag=b"0", mtime=DETERMINISTIC_MTIME, devices=True))
        self._write(data)
        self._write(b"\0" * (-len(data) % BLOCK))

    def add_file(self, arcname: str, source: BinaryIO, size: int, *, executable: bool = False) -> None:
        """Copy ``size`` bytes from ``source``; a file that changes size under us is an error."""
        name = self._name(arcname)
        mode = 0o755 if executable else 0o644
        self._write(_header(name, size=size, mode=mode, typeflag=b"0", mtime=DETERMINISTIC_MTIME, devices=True))
        view = memoryview(self._buf)
        remaining = size
        while remaining:
            n = source.readinto(view[: min(COPY_CHUNK, remaining)])  # type: ignore[attr-defined]
            if not n:
                raise OSError(f"{arcname} shrank while it was being archived")
            self._write(view[:n])
            remaining -= n
        self._write(b"\0" * (-size % BLOCK))

    def add_hole(self, arcname: str, size: int) -> int:
        """Write the header of a ``size``-byte file whose bytes come later; returns their offset.

        ``out`` must be seekable: the writer seeks over the data (leaving a hole for whoever
        fills it with positioned writes) and writes the padding after it.
        """
        name = self._name(arcname)
        self._write(_header(name, size=size, mode=0o644, typeflag=b"0", mtime=DETERMINISTIC_MTIME, devices=True))
        offset = self.position
        self.out.seek(size, 1)  # type: ignore[attr-defined]
        self.position += size
        self._write(b"\0" * (-size % BLOCK))
        return offset

    def finish(self) -> None:
        self._write(b"\0" * (2 * BLOCK))
        self.out.flush()


def archive_size(members: list[tuple[str, int | None]]) -> int:
    """The exact byte size the writer will produce for ``(arcname, size)`` members (``None`` = directory)."""
    total = 2 * BLOCK
    for arcname, size in members:
        name_len = len(arcname.encode("utf-8"))
        if name_len > 100:
            total += BLOCK + ((name_len + 1 + BLOCK - 1) // BLOCK) * BLOCK
        total += BLOCK + ((size or 0) + BLOCK - 1) // BLOCK * BLOCK
    return total
