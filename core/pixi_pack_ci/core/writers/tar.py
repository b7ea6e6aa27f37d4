"""A plain tar, streamed to a file (atomically) or to standard output."""

from __future__ import annotations

from ..executable import HashingSink
from ..model import PackResult
from ..progress import ProgressReporter
from ..tarwriter import Writable
from .base import PackWriter, WriteJob, stream_pack, write_tar


class TarWriter(PackWriter):
    name = "tar"

    def accepts(self, job: WriteJob) -> bool:
        return job.plan.kind == "tar"

    def write(self, job: WriteJob) -> PackResult:
        def stream(out: Writable, progress: ProgressReporter) -> HashingSink:
            sink = HashingSink(out)
            write_tar(job.entries, sink, job, progress)
            return sink

        return stream_pack(job, stream, 0o644)
