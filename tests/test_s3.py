"""``s3://`` packages and mirrors against moto's real S3 server on 127.0.0.1 (IAM checks on)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import DemoChannel, Project, assert_clean_error, run_cli
from object_stores import FaultyProxy, MotoS3
from signing import assert_secret_hidden, no_ci
from support import channel_records, write_lockfile

BUCKET = "pixi-chan"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory, demo_channel: DemoChannel) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("moto"))
    server.put_channel(BUCKET, "demo", demo_channel.path)
    yield server
    server.stop()


@pytest.fixture
def proxy(moto: MotoS3) -> Iterator[FaultyProxy]:
    """The bucket's endpoint: moto behind a proxy that counts requests and fails where told."""
    faulty = FaultyProxy(moto.url)
    yield faulty
    faulty.stop()


def mixed_lockfile(project: Project, directory: Path, bases: dict[str, str]) -> Path:
    """The project's linux-64 environment, each package from the base URL ``bases`` gives its file
    name (``*`` for the others)."""
    records = {
        base: {
            r.file_name: r for sub in ("linux-64", "noarch") for r in channel_records(project.channel.path, base)[sub]
        }
        for base in set(bases.values())
    }
    names = sorted(next(iter(records.values())))
    chosen = [records[bases.get(name, bases["*"])][name] for name in names]
    return write_lockfile(directory / "pixi.lock", {"default": {"linux-64": chosen}}, bases["*"])


def s3_config(path: Path, endpoint: str, *, bucket: str = BUCKET, style: str = "force-path-style = true") -> Path:
    path.write_text(f'[s3-options.{bucket}]\nendpoint-url = "{endpoint}"\nregion = "{MotoS3.REGION}"\n{style}\n')
    return path


def s3_auth(path: Path, key_id: str, secret: str, key: str = f"s3://{BUCKET}") -> Path:
    entry = {"S3Credentials": {"access_key_id": key_id, "secret_access_key": secret, "session_token": None}}
    path.write_text(json.dumps({key: entry}))
    return path


def everything(proc) -> str:  # type: ignore[no-untyped-def]
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def test_s3_http_and_file_packages_pack_and_unpack(
    project: Project, moto: MotoS3, proxy: FaultyProxy, tmp_path: Path
) -> None:
    s3_base, http_base = f"s3://{BUCKET}/demo/", project.channel.url
    file_base = project.channel.path.as_uri() + "/"
    lock = mixed_lockfile(project, tmp_path / "p", {
        "*": s3_base, "libgreet-1.2.3-h1234_0.conda": http_base, "noarch-data-1.0-0.conda": file_base,
    })  # fmt: skip
    text = lock.read_text()
    assert s3_base in text and http_base in text and f"conda: {project.channel.path}/noarch/" in text
    config = s3_config(tmp_path / "config.toml", proxy.url)
    auth = s3_auth(tmp_path / "auth.json", moto.key_id, moto.secret)
    run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "env.tar", "-c", config, "--auth-file", auth,
            check=True)  # fmt: skip
    assert proxy.requests[f"/{BUCKET}/demo/linux-64/hello-tool-1.0-0.conda"] == 1  # path style, at the endpoint
    assert project.channel.server.requests["/linux-64/libgreet-1.2.3-h1234_0.conda"] == 1
    assert project.channel.server.requests["/linux-64/hello-tool-1.0-0.conda"] == 0
    run_cli("unpack", tmp_path / "env.tar", "-o", tmp_path / "deploy", check=True)
    assert (tmp_path / "deploy/env/bin/hello-tool").is_file()
    assert (tmp_path / "deploy/env/share/noarch-data/data.json").is_file()


def test_s3_failures_are_one_line_each(project: Project, moto: MotoS3, proxy: FaultyProxy, tmp_path: Path) -> None:
    lock = mixed_lockfile(project, tmp_path / "p", {"*": f"s3://{BUCKET}/demo/"})
    config = s3_config(tmp_path / "config.toml", proxy.url)
    out = tmp_path / "env.tar"
    cases = {
        "wrong secret": (s3_auth(tmp_path / "a1.json", moto.key_id, "wrong-secret-key-9f8e"),
                         "answered 403 (SignatureDoesNotMatch; the credentials from --auth-file"),
        "unknown key": (s3_auth(tmp_path / "a2.json", "AKIAUNKNOWN00000000X", "wrong-secret-key-9f8e"),
                        "answered 403 (InvalidAccessKeyId"),
    }  # fmt: skip
    for label, (auth, expected) in cases.items():
        line = assert_clean_error(run_cli("pack", lock.parent, "-p", "linux-64", "-o", out, "-c", config,
                                          "--auth-file", auth), code=1)  # fmt: skip
        assert expected in line and "wrong-secret-key-9f8e" not in line, (label, line)
        assert not out.exists()
    good = s3_auth(tmp_path / "good.json", moto.key_id, moto.secret)
    # a missing object: 404 at once, without retries
    missing = f"/{BUCKET}/demo/linux-64/hello-tool-1.0-0.conda"
    moto.s3.delete_object(Bucket=BUCKET, Key=missing.split("/", 2)[2])
    proxy.requests.clear()
    try:
        line = assert_clean_error(run_cli("pack", lock.parent, "-p", "linux-64", "-o", out, "-c", config,
                                          "--auth-file", good), code=1)  # fmt: skip
        assert (
            f"hello-tool-1.0-0.conda: s3://{BUCKET}/demo/linux-64/hello-tool-1.0-0.conda answered 404 (NoSuchKey)"
            in line
        )
        assert proxy.requests[missing] == 1
    finally:
        moto.put_channel(BUCKET, "demo", project.channel.path, ["hello-tool-1.0-0.conda"])
    # a server error: retried (PIXI_PACK_CI_DOWNLOAD_ATTEMPTS=3 in the tests), then one line
    broken = f"/{BUCKET}/demo/linux-64/libgreet-1.2.3-h1234_0.conda"
    proxy.always_fail.add(broken)
    proxy.requests.clear()
    line = assert_clean_error(run_cli("pack", lock.parent, "-p", "linux-64", "-o", out, "-c", config,
                                      "--auth-file", good), code=1)  # fmt: skip
    assert "could not download libgreet-1.2.3-h1234_0.conda after 3 attempts" in line and "500 (InternalError)" in line
    assert proxy.requests[broken] == 3 and not out.exists()


def test_https_channel_mirrored_into_s3(project: Project, moto: MotoS3, proxy: FaultyProxy, tmp_path: Path) -> None:
    """An https channel whose [mirrors] entry is a bucket: nothing is asked of the https host."""
    upstream = "https://conda.invalid/demo/"
    lock = mixed_lockfile(project, tmp_path / "p", {"*": upstream})
    config = s3_config(tmp_path / "config.toml", proxy.url)
    with config.open("a") as fh:
        fh.write(f'[mirrors]\n"https://conda.invalid/demo" = ["s3://{BUCKET}/demo"]\n')
    auth = s3_auth(tmp_path / "auth.json", moto.key_id, moto.secret)
    run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "env.tar", "-c", config, "--auth-file", auth,
            check=True)  # fmt: skip
    assert proxy.requests[f"/{BUCKET}/demo/linux-64/hello-tool-1.0-0.conda"] == 1
    run_cli("unpack", tmp_path / "env.tar", "-o", tmp_path / "deploy", check=True)


def test_aws_credential_chain_when_the_auth_file_has_none(
    project: Project, moto: MotoS3, proxy: FaultyProxy, tmp_path: Path
) -> None:
    """No S3 entry in any credential source: AWS's own chain, from environment variables and from a
    profile in the shared credentials file; an auth-file entry wins over both (as in rattler)."""
    lock = mixed_lockfile(project, tmp_path / "p", {"*": f"s3://{BUCKET}/demo/"})
    config = s3_config(tmp_path / "config.toml", proxy.url)
    out = tmp_path / "env.tar"
    args = ["pack", lock.parent, "-p", "linux-64", "-o", out, "-c", config]
    env_keys = {"AWS_ACCESS_KEY_ID": moto.key_id, "AWS_SECRET_ACCESS_KEY": moto.secret}
    run_cli(*args, env=env_keys, check=True)
    profiles = tmp_path / "aws-credentials"
    profiles.write_text(f"[deploy]\naws_access_key_id = {moto.key_id}\naws_secret_access_key = {moto.secret}\n")
    run_cli(*args, env={"AWS_SHARED_CREDENTIALS_FILE": str(profiles), "AWS_PROFILE": "deploy"}, check=True)
    # the two disagree: the auth file's entry is the one used
    wrong_env = {"AWS_ACCESS_KEY_ID": moto.key_id, "AWS_SECRET_ACCESS_KEY": "wrong-secret-key-9f8e"}
    good = s3_auth(tmp_path / "good.json", moto.key_id, moto.secret)
    run_cli(*args, "--auth-file", good, env=wrong_env, check=True)
    line = assert_clean_error(run_cli(*args, env=wrong_env), code=1)
    assert "SignatureDoesNotMatch; the AWS credentials (env) were refused" in line
    line = assert_clean_error(run_cli(*args), code=1)
    assert "Unable to locate credentials" in line and "AWS_ACCESS_KEY_ID" in line


def test_bucket_without_s3_options_uses_aws_endpoint_settings(
    project: Project, moto: MotoS3, proxy: FaultyProxy, tmp_path: Path
) -> None:
    """A bucket with no [s3-options] table is AWS's: endpoint and keys from AWS's settings alone
    (here AWS_ENDPOINT_URL); an auth-file S3 entry is not used for it, as in rattler."""
    lock = mixed_lockfile(project, tmp_path / "p", {"*": f"s3://{BUCKET}/demo/"})
    localhost = proxy.url.replace("127.0.0.1", "localhost")  # rattler's rule: a localhost endpoint is path style
    env = {"AWS_ENDPOINT_URL": localhost, "AWS_REGION": MotoS3.REGION,
           "AWS_ACCESS_KEY_ID": moto.key_id, "AWS_SECRET_ACCESS_KEY": moto.secret}  # fmt: skip
    run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "env.tar", env=env, check=True)
    assert proxy.requests[f"/{BUCKET}/demo/linux-64/hello-tool-1.0-0.conda"] == 1
    ignored = s3_auth(tmp_path / "auth.json", "AKIAUNKNOWN00000000X", "wrong-secret-key-9f8e")
    run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "f.tar", "--auth-file", ignored, env=env,
            check=True)  # fmt: skip


def test_s3_credentials_never_leak(project: Project, moto: MotoS3, proxy: FaultyProxy, tmp_path: Path) -> None:
    """The leak test's S3 part: keys from the auth file, used and refused, verbose, in JSON, in a
    GitHub job (whose log masks them), and in every file written."""
    lock = mixed_lockfile(project, tmp_path / "p", {"*": f"s3://{BUCKET}/demo/"})
    config = s3_config(tmp_path / "config.toml", proxy.url)
    good = s3_auth(tmp_path / "good.json", moto.key_id, moto.secret)
    wrong_secret = "wrong-secret-key-9f8e"
    bad = s3_auth(tmp_path / "bad.json", moto.key_id, wrong_secret)
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    env = {**no_ci(), "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs)}
    pack = tmp_path / "env.tar"
    base = ["pack", lock.parent, "-p", "linux-64", "-c", config]
    runs = [
        run_cli(*base, "-o", pack, "--auth-file", good, "-vv", "--json", env=env),
        run_cli(*base, "-o", pack, "--auth-file", good, "-v", "--dry-run", env=env),
        run_cli(*base, "-o", tmp_path / "f.tar", "--auth-file", bad, "-vv", env=env),
    ]
    assert [r.returncode for r in runs] == [0, 0, 1]
    texts = [everything(r) for r in runs]
    texts += [summary.read_text(), outputs.read_text(), pack.read_bytes().decode("latin-1"),
              run_cli("inspect", pack, "--json", check=True).stdout.decode()]  # fmt: skip
    text = "\n".join(texts)
    for secret in (moto.secret, moto.key_id, wrong_secret):
        assert_secret_hidden(text, secret)
    assert f"::add-mask::{moto.secret}" in text or f"::add-mask ::{moto.secret}" in text


def test_a_missing_extra_is_one_line(project: Project, tmp_path: Path) -> None:
    """Without botocore (the s3 extra) or google-auth (the gcs extra): one line naming the extra."""
    for package, scheme, extra in (("botocore", "s3", "s3"), ("google/auth", "gcs", "gcs")):
        blocker = tmp_path / f"no-{extra}" / package
        blocker.mkdir(parents=True)
        (blocker / "__init__.py").write_text("raise ImportError('not installed here')\n")
        lock = mixed_lockfile(project, tmp_path / f"p-{extra}", {"*": f"{scheme}://bucket-x/demo/"})
        env = {"PYTHONPATH": str(tmp_path / f"no-{extra}"), "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"}
        line = assert_clean_error(run_cli("pack", lock.parent, "-p", "linux-64", "-o", tmp_path / "e.tar", env=env))
        assert f"{scheme}:// URLs need" in line and f"pip install 'pixi-pack-ci[{extra}]'" in line
