"""Fast tests of pure functions: platform names, locked sources, uv's failure reports, redaction.
No servers, no packages: `pytest tests/unit` runs in about a second."""

from __future__ import annotations

from pathlib import Path

import pytest
from pixi_pack_ci.core.errors import LockfileError, PlatformNotFoundError
from pixi_pack_ci.core.lockfile import resolve_platform
from pixi_pack_ci.core.redact import redact_url
from pixi_pack_ci.core.sources import locked_source
from pixi_pack_ci.core.wheelbuild import _cause

CHOICES = {"linux-64": "linux-64", "linux-64-cuda": "linux-64", "p2": "linux-aarch64", "win-64": "win-64"}


def test_platform_by_name_or_by_the_one_subdir() -> None:
    assert resolve_platform(CHOICES, "linux-64-cuda", "env") == ("linux-64-cuda", "linux-64")
    assert resolve_platform(CHOICES, "linux-64", "env") == ("linux-64", "linux-64")  # its own name first
    assert resolve_platform(CHOICES, "linux-aarch64", "env") == ("p2", "linux-aarch64")
    assert resolve_platform(None, "osx-arm64", "env") == ("osx-arm64", "osx-arm64")  # empty v6 environment


def test_platform_errors_name_the_choices() -> None:
    with pytest.raises(PlatformNotFoundError, match=r"it has: linux-64, linux-64-cuda \(linux-64\), p2"):
        resolve_platform(CHOICES, "osx-64", "env")
    both = {"p1": "linux-64", "p2": "linux-64"}
    with pytest.raises(PlatformNotFoundError, match=r"ambiguous.*p1, p2"):
        resolve_platform(both, "linux-64", "env")
    with pytest.raises(PlatformNotFoundError, match="unknown platform 'linux64'"):
        resolve_platform(None, "linux64", "env")


def test_locked_sources_as_pixi_writes_them(tmp_path: Path) -> None:
    folder = locked_source(".", tmp_path)
    assert (folder.kind, folder.location) == ("path", str(tmp_path))
    assert locked_source("./libs/sub", tmp_path).location == str(tmp_path / "libs" / "sub")
    commit = "b5e03d1f397c576232effd48dd1dd4b790d90ea7"
    git = locked_source(f"git+https://github.com/RoboStack/vinca.git?rev={commit}#{commit}", tmp_path)
    assert (git.kind, git.location, git.commit) == ("git", "https://github.com/RoboStack/vinca.git", commit)
    sub = locked_source(f"git+https://h/r.git?subdirectory=py#{commit}", tmp_path)
    assert sub.subdirectory == "py"
    sdist = locked_source("https://files.pythonhosted.org/packages/aa/immutables-0.21.tar.gz", tmp_path)
    assert sdist.kind == "sdist" and sdist.location.endswith("immutables-0.21.tar.gz")
    assert locked_source("./dist/x-1.0.tar.gz", tmp_path).kind == "sdist"


def test_moving_git_refs_and_unknown_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match="pins no commit"):
        locked_source("git+https://github.com/squidfunk/mike?branch=main", tmp_path)
    with pytest.raises(LockfileError, match="neither a wheel nor an sdist"):
        locked_source("https://example.org/pkg/page.html", tmp_path)


def test_uv_failure_reports_become_one_cause() -> None:
    backend = (
        'Building wheel...\nTraceback (most recent call last):\n  File "<string>", line 1\n'
        "RuntimeError: broken on purpose\nerror: Failed to build `/x`\n"
        "  cause: The build backend returned an error\n  cause: Call to `setuptools.build_meta` failed\n"
    )
    assert _cause(backend) == "the build backend failed: RuntimeError: broken on purpose"
    network = (
        "error: Failed to build `/x`\n  cause: Failed to resolve requirements\n"
        "  cause: Failed to fetch: http://127.0.0.1:1/simple/setuptools/\n  cause: Connection refused (os error 111)\n"
    )
    fetch = "Failed to fetch: http://127.0.0.1:1/simple/setuptools/"
    assert _cause(network) == f"{fetch} (Connection refused (os error 111))"
    assert _cause("") == "no output"


def test_redaction_of_urls() -> None:
    assert redact_url("https://user:secret@host.example/t/tk-123/conda-forge/x.conda").count("secret") == 0
    assert "tk-123" not in redact_url("https://host.example/t/tk-123/conda-forge/x.conda")


def test_windows_targets_and_their_script_launchers() -> None:
    from pixi_pack_ci.core.platforms import is_windows, wheel_script_kind

    assert [is_windows(p) for p in ("win-64", "win-arm64", "linux-64", "osx-arm64", "noarch")] == [
        True, True, False, False, False,
    ]  # fmt: skip
    assert [wheel_script_kind(p) for p in ("win-64", "win-arm64", "win-32", "linux-aarch64")] == [
        "win-amd64", "win-arm64", "win-ia32", "posix",
    ]  # fmt: skip


def test_per_package_layers_are_refused_past_the_room_even_when_one_layer_is_left() -> None:
    """--layers per-package never merges quietly: with room for one layer and one package (which
    needs its own plus the top one), it is refused; auto and single fit into the one layer."""
    from pixi_pack_ci.core.image.errors import ImageUsageError
    from pixi_pack_ci.core.image.layers import Unit, group

    units = [Unit("python", ["bin/python"], 10)]
    with pytest.raises(ImageUsageError, match="per-package needs 2 layers, more than the 1 left"):
        group(units, "per-package", 1, "the 1 left beside a base of 99")
    assert group(units, "auto", 1) == [units] and group(units, "single", 1) == [units]
    assert group(units, "per-package", 2) == [[units[0]]]
