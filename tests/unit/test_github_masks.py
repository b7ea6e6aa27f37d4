"""The GitHub plugin masks secrets from whichever thread finds them (a push's workers each get a
registry token) without touching the process's stdout, which carries the command's results."""

from __future__ import annotations

import io
import sys
import threading

import pytest
from pixi_pack_ci.plugins.github.plugin import GitHubPlugin


def test_masks_from_many_threads_leave_stdout_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    plugin = GitHubPlugin()
    start = threading.Barrier(8)

    def mask(worker: int) -> None:
        start.wait()
        for i in range(200):
            plugin._mask(f"token-{worker}-{i}%\n")

    threads = [threading.Thread(target=mask, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sys.stdout is stdout and not stdout.getvalue()
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 8 * 200 and len(set(lines)) == len(lines)
    assert "::add-mask::token-3-17%25%0A" in lines
