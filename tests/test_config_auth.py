"""Mirrors, credentials and concurrency from pixi-style config and rattler auth files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness import Project, assert_clean_error, credentialed_project, make_project, pack_ok, run_cli
from support import basic_auth, channel_records, write_lockfile

SECRET = "s3cr3t-T0ken-4f9a"


def _all_output(proc) -> str:  # type: ignore[no-untyped-def]
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def test_bearer_token_from_auth_file(project: Project, tmp_path: Path) -> None:
    server = project.channel.server
    server.required_auth = {"/": f"Bearer {SECRET}"}
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"127.0.0.1": {"BearerToken": SECRET}}))
    line = assert_clean_error(run_cli("pack", project.dir, "-p", "linux-64", "-o", tmp_path / "x.tar"), code=1)
    assert "answered 401" in line and "--auth-file" in line
    proc = pack_ok(project.dir, tmp_path / "e.tar", "--auth-file", auth, "-vv", "--json")
    assert SECRET not in _all_output(proc)
    assert SECRET.encode() not in (tmp_path / "e.tar").read_bytes()
    # the same through the environment variable rattler uses
    run_cli(
        "pack",
        project.dir,
        "-p",
        "linux-64",
        "-o",
        tmp_path / "f.tar",
        env={"RATTLER_AUTH_FILE": str(auth)},
        check=True,
    )


def test_basic_auth_and_wildcard_host(project: Project, tmp_path: Path) -> None:
    server = project.channel.server
    server.required_auth = {"/": basic_auth("ci-user", SECRET)}
    auth = tmp_path / "auth.json"
    # host/path prefix keys are matched too; the most specific key wins
    auth.write_text(
        json.dumps(
            {
                "127.0.0.1/elsewhere": {"BearerToken": "wrong-token-xyz"},
                "127.0.0.1": {"BasicHTTP": {"username": "ci-user", "password": SECRET}},
            }
        )
    )
    proc = pack_ok(project.dir, tmp_path / "e.tar", "--auth-file", auth, "-vv")
    assert SECRET not in _all_output(proc)


def test_conda_token(project: Project, tmp_path: Path) -> None:
    server = project.channel.server
    server.required_conda_token = SECRET
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"127.0.0.1": {"CondaToken": SECRET}}))
    proc = pack_ok(project.dir, tmp_path / "e.tar", "--auth-file", auth, "-vv")
    assert SECRET not in _all_output(proc)
    assert any(p.startswith("/linux-64/") for p in server.requests)


def test_credentials_in_lockfile_urls_are_used_and_never_shown(project: Project, tmp_path: Path) -> None:
    server = project.channel.server
    lock_dir = credentialed_project(project, tmp_path / "p", "lockuser", SECRET)
    dry = run_cli("pack", lock_dir, "-p", "linux-64", "--dry-run", check=True)
    dry_json = run_cli("pack", lock_dir, "-p", "linux-64", "--dry-run", "--json", check=True)
    proc = pack_ok(lock_dir, tmp_path / "e.tar", "-vv", "--json")
    for p in (dry, dry_json, proc):
        assert SECRET not in _all_output(p)
    assert "***@127.0.0.1" in dry.stdout.decode()
    assert SECRET.encode() not in (tmp_path / "e.tar").read_bytes()
    server.always_fail.add("/linux-64/libgreet-1.2.3-h1234_0.conda")
    failed = run_cli("pack", lock_dir, "-p", "linux-64", "-o", tmp_path / "g.tar", "-vv")
    assert failed.returncode == 1 and SECRET not in _all_output(failed)


def test_mirror_from_config(project: Project, tmp_path: Path) -> None:
    upstream = "https://conda.invalid/my-channel/"
    records = channel_records(project.channel.path, upstream)
    lock = write_lockfile(
        tmp_path / "p" / "pixi.lock", {"default": {"linux-64": records["linux-64"] + records["noarch"]}}, upstream
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mirrors]\n"https://conda.invalid/my-channel" = ["{project.channel.url}"]\n[concurrency]\ndownloads = 4\n'
    )
    pack_ok(lock.parent, tmp_path / "e.tar", "-c", config)
    assert project.channel.server.requests["/linux-64/libgreet-1.2.3-h1234_0.conda"] == 1
    run_cli("unpack", tmp_path / "e.tar", "-o", tmp_path / "deploy", check=True)


def test_malformed_config_and_auth_files(project: Project, tmp_path: Path) -> None:
    cases = {
        "config.toml": [
            ("[mirrors\n", "not valid TOML"),
            ("mirrors = 3\n", "[mirrors] must be a table"),
            ('[mirrors]\n"https://a" = []\n', "non-empty list"),
            ('[mirrors]\n"conda-forge" = ["https://b"]\n', "is not a URL"),
            ("[concurrency]\ndownloads = 0\n", "downloads must be a whole number"),
        ],
        "auth.json": [
            ("{", "not valid JSON"),
            ("[]", "must be a JSON object"),
            ('{"h": {"BearerToken": 3}}', "must be one of"),
            ('{"h": "tok"}', "must be one of"),
        ],
    }
    for name, contents in cases.items():
        flag = "-c" if name == "config.toml" else "--auth-file"
        for content, message in contents:
            (tmp_path / name).write_text(content)
            line = assert_clean_error(
                run_cli("pack", project.dir, flag, tmp_path / name, "-o", tmp_path / "e.tar"), code=2
            )
            assert message in line, (content, line)
    line = assert_clean_error(run_cli("pack", project.dir, "--auth-file", tmp_path / "missing.json"), code=2)
    assert "authentication file does not exist" in line


def test_local_packages_by_file_url_and_relative_path(project: Project, tmp_path: Path) -> None:
    """Locations that are file:// URLs or paths relative to the lockfile (pixi-pack bug #229) both pack."""
    proj = make_project(tmp_path / "proj", project.channel)
    text = proj.lockfile.read_text()
    local = tmp_path / "proj" / "local-channel"
    shutil.copytree(project.channel.path, local)
    base = project.channel.url
    libgreet = f"{base}linux-64/libgreet-1.2.3-h1234_0.conda"
    hello = f"{base}linux-64/hello-tool-1.0-0.conda"
    assert libgreet in text and hello in text
    file_url = (local / "linux-64/libgreet-1.2.3-h1234_0.conda").as_uri()
    text = text.replace(libgreet, file_url)
    text = text.replace(f"\n- conda: {file_url}\n", f"\n- conda: {file_url}\n  subdir: linux-64\n")
    # a relative path needs the record's identity spelled out in the packages list, as pixi writes it
    rel = "./local-channel/linux-64/hello-tool-1.0-0.conda"
    text = text.replace(hello, rel)
    text = text.replace(
        f"\n- conda: {rel}\n",
        f"\n- conda: {rel}\n  name: hello-tool\n  version: '1.0'\n  build: '0'\n  subdir: linux-64\n",
    )
    proj.lockfile.write_text(text)
    run_cli("pack", proj.dir, "-p", "linux-64", "-o", tmp_path / "e.tar", check=True, cwd=tmp_path)
    requests = project.channel.server.requests
    assert requests["/linux-64/libgreet-1.2.3-h1234_0.conda"] == 0 and requests["/linux-64/hello-tool-1.0-0.conda"] == 0
    run_cli("unpack", tmp_path / "e.tar", "-o", tmp_path / "deploy", check=True)
    assert (tmp_path / "deploy/env/bin/hello-tool").exists()
