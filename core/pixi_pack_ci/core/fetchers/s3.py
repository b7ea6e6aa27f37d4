"""``s3://bucket/key`` packages, as rattler's S3 middleware fetches them, with botocore.

What rattler does (rattler_networking ``s3_middleware.rs``), and so this:

* a bucket with an ``[s3-options.<bucket>]`` table in ``--config`` lives at its ``endpoint-url`` in
  its ``region``, path style if asked; its credentials are the ``S3Credentials`` entry the
  credential sources hold for ``s3://bucket`` (or the bucket's name), else AWS's own chain;
* any other bucket is on AWS: region, endpoint (``AWS_ENDPOINT_URL``) and credentials all come from
  AWS's chain (environment variables, ``~/.aws/credentials`` and ``~/.aws/config`` profiles, SSO,
  web identity, container and instance metadata); a ``localhost`` endpoint is addressed path style.

Why botocore: it is AWS's own implementation of that chain and of SigV4 signing, endpoint rules
and region redirects, the same things aws-sdk-rust does inside rattler. The request goes out signed
in its headers (as the AWS CLI does) rather than presigned in the URL as rattler does, so no
signature ever sits in a URL that could be logged, and servers that check header signatures only
(moto) work too. botocore's own retries are off: the core's fetch loop retries.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..cache import CHUNK
from ..config import S3Options
from ..credentials import Credential
from ..errors import DownloadError, TransientFetchError
from ..fetch_context import Digests, FetchContext
from ..hookspecs import hookimpl
from ..http_fetcher import HashingWriter
from ..model import Artifact
from . import is_loopback, missing_library

#: Error codes S3 gives for a request that may well work when tried again.
_RETRY_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed"}


def _botocore() -> Any:
    try:
        import botocore.session
    except ImportError:
        raise missing_library("s3", "s3", "botocore") from None
    return botocore


class S3FetcherPlugin:
    """Fetches ``s3://`` URLs; answers None for every other scheme."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: Any = None
        self._clients: dict[str, tuple[Any, str]] = {}

    @hookimpl
    def pixi_pack_ci_fetch_artifact(
        self, artifact: Artifact, destination: Path, context: FetchContext, attempt: int, url: str
    ) -> Digests | None:
        parts = urlsplit(url)
        if parts.scheme != "s3":
            return None
        bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
        if not bucket or not key:
            raise DownloadError(f"cannot fetch {artifact.file_name}: {url} names no bucket and key")
        client, credentials_from = self._client(bucket, url, context)
        return _get_object(client, bucket, key, artifact, destination, context, credentials_from)

    def _client(self, bucket: str, url: str, context: FetchContext) -> tuple[Any, str]:
        """One botocore client per configured bucket, one for all of AWS; and where its keys came from."""
        options = context.config.s3_options.get(bucket)
        cache_key = f"bucket:{bucket}" if options is not None else "aws"
        with self._lock:  # botocore sessions are not thread-safe; the clients they make are
            if cache_key not in self._clients:
                botocore = _botocore()
                if self._session is None:
                    self._session = botocore.session.get_session()
                cred = context.auth.lookup(url) if options is not None else None
                self._clients[cache_key] = _make_client(self._session, options, cred, url, context)
            return self._clients[cache_key]


def _make_client(
    session: Any, options: S3Options | None, cred: Credential | None, url: str, context: FetchContext
) -> tuple[Any, str]:
    from botocore.config import Config

    from .. import __version__

    if cred is not None and cred.kind != "s3":  # as rattler: "unsupported authentication method"
        raise DownloadError(f"the credentials for {url} from {cred.source} are not S3Credentials")
    kwargs: dict[str, Any] = {}
    style = "auto"
    if options is not None:
        kwargs.update(endpoint_url=options.endpoint_url, region_name=options.region)
        style = "path" if options.force_path_style else "virtual"
    else:
        endpoint = session.get_config_variable("endpoint_url") or ""
        if endpoint and is_loopback(urlsplit(endpoint).hostname or ""):
            style = "path"  # rattler: a local endpoint cannot take bucket.host names
    if cred is not None:
        kwargs.update(aws_access_key_id=cred.access_key_id, aws_secret_access_key=cred.secret_access_key,
                      aws_session_token=cred.session_token)  # fmt: skip
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=30,
        read_timeout=300,
        max_pool_connections=context.config.concurrency,
        s3={"addressing_style": style},
        user_agent_extra=f"pixi-pack-ci/{__version__}",
    )
    client = session.create_client("s3", config=config, **kwargs)
    if cred is not None:
        return client, f"credentials from {cred.source}"
    found = session.get_credentials()
    return client, f"AWS credentials ({found.method})" if found is not None else ""


def _get_object(
    client: Any, bucket: str, key: str, artifact: Artifact, destination: Path, context: FetchContext, keys_from: str
) -> Digests:
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError, IncompleteReadError

    shown = f"s3://{bucket}/{key}"
    written = 0
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with body, context.open_destination(artifact, destination) as fh:
            writer = HashingWriter(fh, artifact)
            for chunk in body.iter_chunks(CHUNK):
                writer.write(chunk)
                written += len(chunk)
                context.advance(len(chunk))
        return writer.digests()
    except ClientError as exc:
        context.advance(-written)
        raise _client_error(exc, shown, artifact, keys_from) from None
    except (ConnectionError, HTTPClientError, IncompleteReadError) as exc:
        context.advance(-written)
        raise TransientFetchError(f"{shown}: {type(exc).__name__}: {exc}") from None
    except BotoCoreError as exc:  # no credentials, a broken profile, ...: trying again changes nothing
        context.advance(-written)
        hint = ""
        if type(exc).__name__ == "NoCredentialsError":
            hint = (f" (an S3Credentials entry for s3://{bucket} with [s3-options.{bucket}] in --config, "
                    "or AWS credentials: AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws/credentials)")  # fmt: skip
        raise DownloadError(f"could not download {artifact.file_name} from {shown}: {exc}{hint}") from None


def _client_error(exc: Any, shown: str, artifact: Artifact, keys_from: str) -> DownloadError:
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = str(exc.response.get("Error", {}).get("Code") or "error")
    if status >= 500 or status in (408, 429) or code in _RETRY_CODES:
        return TransientFetchError(f"{shown}: S3 answered {status} ({code})")
    hint = ""
    if status in (401, 403):
        hint = f"; the {keys_from} were refused" if keys_from else "; no credentials were sent"
    return DownloadError(f"could not download {artifact.file_name}: {shown} answered {status} ({code}{hint})")
