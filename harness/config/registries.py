"""Private registries: how the harness and each host reach a registry that wants credentials or
is signed by a CA of its own, as the matrix's `registries:` says.

Credentials come from an auth file in the standard format (containers-auth.json, or docker's
config.json: `{"auths": {"HOST": {"auth": base64("user:password")}}}`), read when needed and never
copied into results, logs or reproduce lines: those name the file.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path


class AuthFileError(Exception):
    """The auth file cannot be read or has no credentials for the registry; str() says why."""


@dataclass(frozen=True)
class RegistryAccess:
    host: str  # host[:port], as the matrix's references name it
    auth_file: Path | None = None
    ca_file: Path | None = None

    def credentials(self) -> tuple[str, str] | None:
        """(user, password) for this registry, or None without an auth file."""
        if self.auth_file is None:
            return None
        entry = _entry(self.auth_file, self.host)
        if "auth" in entry:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        else:
            user, password = entry.get("username", ""), entry.get("password", "")
        if not user:
            raise AuthFileError(f"{self.auth_file}: the entry for {self.host} holds no user name")
        return user, password

    def auth_json(self, as_host: str) -> bytes:
        """An auth file holding only this registry's credentials, under the name a guest reaches
        it by (what its engine is given for one pull, then removed)."""
        user, password = self.credentials() or ("", "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return json.dumps({"auths": {as_host: {"auth": token}}}).encode()


def _entry(path: Path, host: str) -> dict:
    try:
        auths = json.loads(path.read_text())["auths"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuthFileError(f"{path} is not an auth file (containers-auth.json or docker config.json with \"auths\"): {type(exc).__name__}") from None
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v2/", f"https://{host}/v1/"):
        if isinstance(auths.get(key), dict):
            return auths[key]
    raise AuthFileError(f"{path} has no credentials for {host} (it has: {', '.join(sorted(auths)) or 'none'})")
