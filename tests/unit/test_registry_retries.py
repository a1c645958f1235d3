"""The harness's registry client tries again when a registry answers 5xx or not at all, and gives
up at once on a 4xx: against a real HTTP server on loopback that fails as told."""

from __future__ import annotations

import http.server
import threading

import pytest

from harness.registry.push import RegistryClient
from harness.registry.server import RegistryError

MANIFEST = b'{"schemaVersion": 2}'


@pytest.fixture
def registry():
    """Answers GET /v2/r/manifests/<ref> with the codes in `plan` first, then 200."""
    plan: list[int] = []
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.path)
            code = plan.pop(0) if plan else 200
            body = MANIFEST if code == 200 else b"registry busy"
            self.send_response(code)
            self.send_header("Docker-Content-Digest", "sha256:m")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", plan, seen
    server.shutdown()


def test_a_500_once_is_tried_again(registry):
    url, plan, seen = registry
    plan.append(500)
    assert RegistryClient(url, retry_delays=(0.01, 0.01)).manifest("r", "sha256:x", "application/json") == (MANIFEST, "sha256:m")
    assert len(seen) == 2


def test_a_registry_that_keeps_failing_is_named_after_every_try(registry):
    url, plan, seen = registry
    plan.extend([503, 503, 503])
    with pytest.raises(RegistryError, match="GET /v2/r/manifests/latest gave 503: registry busy"):
        RegistryClient(url, retry_delays=(0.01, 0.01)).manifest("r", "latest", "application/json")
    assert len(seen) == 3


def test_a_4xx_is_final(registry):
    url, plan, seen = registry
    plan.append(404)
    with pytest.raises(RegistryError, match="gave 404"):
        RegistryClient(url, retry_delays=(0.01, 0.01)).manifest("r", "latest", "application/json")
    assert len(seen) == 1


def test_a_registry_that_wants_a_token_is_named_as_why_facts_are_missing(registry):
    from harness.registry.inspect import describe

    url, plan, _ = registry
    plan.append(401)
    builds, digest, why = describe(f"{url.split('://')[1]}/vendor/app:2.1", tls_verify=False)
    assert (builds, digest) == ({}, "")
    assert "GET /v2/vendor/app/manifests/2.1 gave 401" in why and "wants credentials" in why
