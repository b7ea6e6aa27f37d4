"""The token request a registry's challenge leads to: one ``scope`` parameter per scope, as the
distribution token spec asks, even when the challenge names several in one string (distribution
does for a cross-repository mount). The token service is a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pixi_pack_ci.core.image.registry import Registry


@pytest.fixture
def token_service() -> Iterator[tuple[str, list[list[tuple[str, str]]]]]:
    queries: list[list[tuple[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            queries.append(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            body = json.dumps({"token": f"token-{len(queries)}"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token", queries
    finally:
        server.shutdown()


def test_a_challenge_with_several_scopes_asks_for_each(token_service: tuple[str, list[list[tuple[str, str]]]]) -> None:
    realm, queries = token_service
    wanted = "repository:acme/app:pull,push repository:library/base:pull"
    challenge = f'Bearer realm="{realm}",service="registry",scope="{wanted}"'
    with httpx.Client() as client:
        registry = Registry("127.0.0.1:1", "http://127.0.0.1:1", client)
        response = httpx.Response(401, headers={"WWW-Authenticate": challenge})
        assert registry._authenticate(response, wanted)
    (query,) = queries
    assert query == [
        ("service", "registry"),
        ("scope", "repository:acme/app:pull,push"),
        ("scope", "repository:library/base:pull"),
    ]
