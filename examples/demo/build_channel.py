"""Rebuild the demo's local channel and pixi.lock (needs the test extra: py-rattler-build).

    python examples/demo/build_channel.py

The packages are noarch, so the demo packs and unpacks on any unix machine; the lockfile
locates them by paths relative to itself, so the folder works wherever it is cloned.
"""

from __future__ import annotations

import asyncio
import bz2
import io
import json
import shutil
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import rattler
from rattler_build import ArchiveType, assemble_package

HERE = Path(__file__).resolve().parent
CHANNEL = HERE / "channel"
PLATFORMS = ["linux-64", "linux-aarch64", "osx-64", "osx-arm64"]
PLACEHOLDER = "/opt/demo-build-prefix_" + "placehold_" * 20
STAMP = datetime(2026, 1, 1, tzinfo=UTC)

PACKAGES = [
    {
        "name": "demo-hello",
        "version": "1.0.0",
        "depends": ["demo-data >=0.2"],
        "archive": ArchiveType.Conda,
        "files": {
            "bin/demo-hello": '#!/bin/sh\necho "Hello from a pixi-pack-ci environment in $CONDA_PREFIX"\n'
            'cat "$CONDA_PREFIX/share/demo-data/message.txt"\ncat "$CONDA_PREFIX/share/demo-relocated/where.txt"\n',
        },
        "executable": ["bin/demo-hello"],
    },
    {
        "name": "demo-data",
        "version": "0.2.1",
        "depends": [],
        "archive": ArchiveType.Conda,
        "files": {"share/demo-data/message.txt": "This file came out of a pack built from pixi.lock.\n"},
    },
    {
        "name": "demo-relocated",
        "version": "0.1.0",
        "depends": [],
        "archive": ArchiveType.TarBz2,
        "files": {"share/demo-relocated/where.txt": f"Installed at {PLACEHOLDER}\n"},
        "placeholder": "share/demo-relocated/where.txt",
    },
]


def _record_placeholder(package: Path, rel: str) -> None:
    # assemble_package only detects its own random staging prefix; record ours by hand.
    with tarfile.open(package, "r:bz2") as src:
        members = [(m, src.extractfile(m).read() if m.isreg() else None) for m in src.getmembers()]  # type: ignore[union-attr]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for member, data in members:
            if member.name == "info/paths.json" and data is not None:
                paths = json.loads(data)
                for entry in paths["paths"]:
                    if entry["_path"] == rel:
                        entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
                data = json.dumps(paths, indent=2).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    package.write_bytes(bz2.compress(out.getvalue()))


def main() -> None:
    shutil.rmtree(CHANNEL, ignore_errors=True)
    (CHANNEL / "noarch").mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in PACKAGES:
            files = Path(tmp) / spec["name"]
            for rel, content in spec["files"].items():
                path = files / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
                if rel in spec.get("executable", []):
                    path.chmod(0o755)
            result = assemble_package(
                name=spec["name"],
                version=spec["version"],
                target_platform="noarch",
                build_string="0",
                output_dir=CHANNEL / "noarch",
                files_dir=files,
                depends=spec["depends"],
                noarch="generic",
                archive_type=spec["archive"],
                timestamp=STAMP,
                detect_prefix=False,
                license="BSD-3-Clause",
            )
            if "placeholder" in spec:
                _record_placeholder(result.path, spec["placeholder"])
    asyncio.run(rattler.index.index_fs(CHANNEL, write_zst=False, write_shards=False, force=True))
    # The lockfile points at the files by paths relative to itself; py-rattler writes file URLs
    # of a marker folder as absolute paths, which we turn into relative ones.
    marker = "/demo-channel-marker"
    records = rattler.RepoData.from_path(CHANNEL / "noarch" / "repodata.json").into_repo_data(
        rattler.Channel("file://" + marker)
    )
    lock = rattler.LockFile([rattler.LockPlatform(p) for p in PLATFORMS])
    lock.set_channels("default", [rattler.LockChannel("./channel")])
    for platform in PLATFORMS:
        for record in sorted(records, key=lambda r: r.file_name):
            lock.add_conda_package("default", rattler.LockPlatform(platform), record)
    lock_path = HERE / "pixi.lock"
    lock.to_path(lock_path)
    text = lock_path.read_text().replace(f"  channel: file://{marker}\n", "").replace(marker + "/", "./channel/")
    assert marker not in text, "unexpected lockfile layout from py-rattler"
    lock_path.write_text(text)
    rattler.LockFile.from_path(lock_path)  # it must still parse
    print(f"wrote {len(records)} packages to {CHANNEL} and {lock_path}")


if __name__ == "__main__":
    main()
