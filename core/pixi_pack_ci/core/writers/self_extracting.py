"""A self-extracting pack: a ``.sh`` (raw archive after the script) or ``.ps1`` (base64) that
creates the environment when run (see :mod:`pixi_pack_ci.core.executable`)."""

from __future__ import annotations

from ..executable import HashingSink, executable_suffix, write_executable
from ..model import PackResult
from ..platforms import is_windows
from ..progress import ProgressReporter
from ..tarwriter import Writable, archive_size
from .base import PackWriter, WriteJob, stream_pack, write_tar


class SelfExtractingWriter(PackWriter):
    name = "executable"

    def accepts(self, job: WriteJob) -> bool:
        return job.plan.kind == "executable"

    def write(self, job: WriteJob) -> PackResult:
        plan = job.plan
        members: list[tuple[str, int | None]] = [
            (e.path, None if e.is_dir else (len(e.data) if e.data is not None else job.sizes[e.path]))
            for e in job.entries
        ]

        def stream(out: Writable, progress: ProgressReporter) -> HashingSink:
            sink = HashingSink(out)
            write_executable(
                sink,
                platform=plan.platform,
                environment=plan.environment,
                name=plan.output.name if plan.output else "environment" + executable_suffix(plan.platform),
                unpacker=job.unpacker,
                archive_bytes=archive_size(members),
                write_archive=lambda payload: write_tar(job.entries, payload, job, progress),
            )
            return sink

        # Windows finds scripts by name; a unix script needs its executable bit.
        return stream_pack(job, stream, 0o644 if is_windows(plan.platform) else 0o755)
