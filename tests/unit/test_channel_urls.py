"""Pure rules of the S3, GCS and OCI fetchers that no server shows: rattler's OCI name mapping, which
registries get plain http, where credentials may go, and the credential keys of a URL."""

from __future__ import annotations

from pixi_pack_ci.core.credentials import lookup_keys
from pixi_pack_ci.core.fetchers.oci import _safe_realm, parse_reference


def test_oci_names_follow_rattler() -> None:
    ref = parse_reference("oci://ghcr.io/channel-mirrors/conda-forge/linux-64/_openmp_mutex-4.5-2_gnu.tar.bz2")
    assert ref is not None
    assert ref.repository == "channel-mirrors/conda-forge/linux-64/zzz_openmp_mutex"
    assert (ref.tag, ref.media_type) == ("4.5-2_gnu", "application/vnd.conda.package.v1")
    ref = parse_reference("oci://ghcr.io/m/noarch/pkg-1.0+local!2=x-py_0.conda")
    assert ref is not None and ref.tag == "1.0__p__local__e__2__eq__x-py_0"
    assert ref.media_type == "application/vnd.conda.package.v2" and ref.base == "https://ghcr.io"
    assert parse_reference("oci://ghcr.io/m/noarch/repodata.json") is None
    assert parse_reference("oci://ghcr.io/pkg-1.0-0.conda") is None  # no channel path


def test_plain_http_and_clear_text_credentials_only_on_this_machine() -> None:
    local = parse_reference("oci://127.0.0.1:5000/c/linux-64/a-1-0.conda")
    remote = parse_reference("oci://registry.example/c/linux-64/a-1-0.conda")
    assert local is not None and remote is not None
    assert local.base == "http://127.0.0.1:5000" and remote.base == "https://registry.example"
    assert _safe_realm("https://auth.example/token", remote)
    assert not _safe_realm("http://auth.example/token", remote)
    assert not _safe_realm("http://127.0.0.1:9/token", remote)  # a remote registry's realm on loopback
    assert _safe_realm("http://localhost:9/token", local)
    assert not _safe_realm("http://auth.example/token", local)


def test_credential_keys_in_rattlers_order() -> None:
    assert list(lookup_keys("https://repo.prefix.dev/chan/linux-64/a.conda")) == [
        "repo.prefix.dev/chan/linux-64/a.conda", "repo.prefix.dev/chan/linux-64", "repo.prefix.dev/chan",
        "repo.prefix.dev", "*.repo.prefix.dev", "*.prefix.dev", "*.dev",
    ]  # fmt: skip
    assert list(lookup_keys("s3://bucket/chan/a.conda")) == [
        "bucket/chan/a.conda", "bucket/chan", "bucket", "s3://bucket/chan/a.conda", "s3://bucket/chan",
        "s3://bucket", "*.bucket",
    ]  # fmt: skip
    assert list(lookup_keys("http://127.0.0.1:8000/x")) == ["127.0.0.1/x", "127.0.0.1:8000", "127.0.0.1"]
