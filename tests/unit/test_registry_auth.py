"""The registry client answers a private registry's challenges, against a real HTTP server on
loopback that asks as registries do: Basic, or Bearer with a token realm; and refused credentials
are named by their file, never shown."""

from __future__ import annotations

import base64
import http.server
import json
import threading

import pytest

from harness.config.registries import AuthFileError, RegistryAccess
from harness.registry.push import RegistryClient
from harness.registry.server import RegistryError

GOOD = "Basic " + base64.b64encode(b"qe:s3cret-pw").decode()


@pytest.fixture
def registry():
    """/v2/... wants Basic `qe:s3cret-pw` (scheme "basic") or a Bearer token from /token (scheme "bearer")."""
    state = {"scheme": "basic", "seen": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            said = self.headers.get("Authorization", "")
            state["seen"].append((self.path, said))
            port = self.server.server_address[1]
            if self.path.startswith("/token"):
                ok = said == GOOD and "scope=repository%3Avendor%2Fapp%3Apull" in self.path
                return self._reply(200 if ok else 401, json.dumps({"token": "t0k"}).encode() if ok else b"bad credentials")
            if said in (GOOD, "Bearer t0k") and (said == GOOD) == (state["scheme"] == "basic"):
                return self._reply(200, b'{"schemaVersion": 2}')
            challenge = 'Basic realm="lab"' if state["scheme"] == "basic" else f'Bearer realm="http://127.0.0.1:{port}/token",service="lab",scope="repository:vendor/app:pull"'
            self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', challenge)

        def _reply(self, code: int, body: bytes, challenge: str = "") -> None:
            self.send_response(code)
            if challenge:
                self.send_header("WWW-Authenticate", challenge)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", state
    server.shutdown()


def auth_file(tmp_path, host: str, password: str):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"qe:{password}".encode()).decode()}}}))
    return path


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_a_challenge_is_answered_with_the_auth_files_credentials(registry, tmp_path, scheme):
    host, state = registry
    state["scheme"] = scheme
    client = RegistryClient(f"http://{host}", access=RegistryAccess(host, auth_file(tmp_path, host, "s3cret-pw")))
    assert client.manifest("vendor/app", "1", "application/json")[0] == b'{"schemaVersion": 2}'
    assert client.manifest("vendor/app", "2", "application/json")[0]  # the answer is kept: no new challenge
    assert [said for _, said in state["seen"]].count("") == 1


def test_refused_credentials_name_their_file_not_the_password(registry, tmp_path):
    host, state = registry
    path = auth_file(tmp_path, host, "wrong-pw")
    with pytest.raises(RegistryError) as caught:
        RegistryClient(f"http://{host}", access=RegistryAccess(host, path)).manifest("vendor/app", "1", "application/json")
    said = str(caught.value)
    assert f"gave 401 (the credentials from {path} were refused)" in said and "wrong-pw" not in said
    state["scheme"] = "bearer"
    with pytest.raises(RegistryError, match="its token service .*/token gave 401: bad credentials"):
        RegistryClient(f"http://{host}", access=RegistryAccess(host, path)).manifest("vendor/app", "1", "application/json")


def test_an_auth_file_without_the_registry_says_which_it_has(tmp_path):
    path = auth_file(tmp_path, "other.example:5000", "x")
    with pytest.raises(AuthFileError, match=r"has no credentials for lab.example:443 \(it has: other.example:5000\)"):
        RegistryAccess("lab.example:443", path).credentials()
    assert json.loads(RegistryAccess("other.example:5000", path).auth_json("10.0.2.2:5000"))["auths"].keys() == {"10.0.2.2:5000"}
