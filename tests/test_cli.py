"""Several packs in one run, inspect, and dry-run output."""

from __future__ import annotations

import json
from pathlib import Path

from harness import Project, pack_ok, run_cli


def test_several_envs_and_platforms_share_downloads(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "packs"
    proc = run_cli(
        "pack",
        project.dir,
        "-e",
        "default",
        "-e",
        "prod",
        "-p",
        "linux-64",
        "-p",
        "win-64",
        "--output-dir",
        out,
        "--json",
    )
    # prod has no win-64: one clear error, nothing written
    assert proc.returncode == 2 and b"platform 'win-64' not found for environment 'prod'" in proc.stderr
    assert not out.exists() or not list(out.iterdir())

    proc = run_cli(
        "pack",
        project.dir,
        "-e",
        "default",
        "-p",
        "linux-64",
        "-p",
        "win-64",
        "-p",
        "osx-arm64",
        "--output-dir",
        out,
        "--json",
        check=True,
    )
    packs = json.loads(proc.stdout)["packs"]
    assert sorted(Path(p["path"]).name for p in packs) == [
        "default-linux-64.tar",
        "default-osx-arm64.tar",
        "default-win-64.tar",
    ]
    # noarch packages are in all three packs but were downloaded once
    assert project.channel.server.requests["/noarch/noarch-data-1.0-0.conda"] == 1
    run_cli("pack", project.dir, "-e", "default", "-e", "prod", "-p", "linux-64", "--output-dir", out, check=True)
    assert (out / "prod-linux-64.tar").is_file()
    assert project.channel.server.requests["/linux-64/hello-tool-1.0-0.conda"] == 2  # once per run, no cache


def test_inspect(project: Project, tmp_path: Path) -> None:
    pack = tmp_path / "e.tar"
    pack_ok(project.dir, pack)
    data = json.loads(run_cli("inspect", pack, "--json", check=True).stdout)
    assert data["platform"] == "linux-64" and data["format_version"] == "1"
    assert data["package_count"] == len(project.linux_packages)
    assert data["archive_size"] == pack.stat().st_size
    hello = next(p for p in data["packages"] if p["name"] == "hello-tool")
    assert hello["version"] == "1.0" and hello["size"] > 0 and len(hello["sha256"]) == 64
    text = run_cli("inspect", pack, check=True).stdout.decode()
    assert "platform: linux-64" in text and "libgreet=1.2.3=h1234_0" in text
    folder = tmp_path / "dir"
    run_cli("pack", project.dir, "-p", "linux-64", "--directory-only", "-o", folder, check=True)
    assert json.loads(run_cli("inspect", folder, "--json", check=True).stdout)["package_count"] == data["package_count"]


def test_dry_run_human_output(project: Project, tmp_path: Path) -> None:
    proc = run_cli("pack", project.dir, "-p", "linux-64", "--dry-run", cwd=tmp_path, check=True)
    text = proc.stdout.decode()
    assert f"default on linux-64 → {tmp_path / 'environment.tar'}: {len(project.linux_packages)} packages" in text
    assert "libgreet=1.2.3=h1234_0" in text and project.channel.url in text
    assert not (tmp_path / "environment.tar").exists()
    assert sum(project.channel.server.requests.values()) == 0


def test_default_output_name_and_manifest_forms(project: Project, tmp_path: Path) -> None:
    run_cli("pack", "-p", "linux-64", cwd=project.dir, check=True)  # MANIFEST_PATH defaults to .
    assert (project.dir / "environment.tar").is_file()
    run_cli("pack", project.dir / "pixi.toml", "-p", "linux-64", "--directory-only", cwd=tmp_path, check=True)
    assert (tmp_path / "environment" / "pixi-pack.json").is_file()
    (project.dir / "pyproject.toml").write_text("[project]\nname='x'\n")
    pack_ok(project.dir / "pyproject.toml", tmp_path / "p.tar")
    assert (tmp_path / "p.tar").is_file()
