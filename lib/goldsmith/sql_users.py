"""The users of `goldsmith serve-sql`: a JSON file of password hashes and grants, read by the server's
authenticator and guard (`resources/UsersAuthenticator.java`, `resources/Guard.java`) at every connection and
statement, so a change takes effect without a restart.

A password is kept as PBKDF2-HMAC-SHA256 (600,000 iterations, a random 16-byte salt), never in clear text. A grant
is `layer` (the layer's tables but its quarantine tables), `layer.*` (all of them) or `layer.table`; a new user gets
`gold`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from goldsmith.errors import ConfigError
from goldsmith.io.paths import local_folder

ITERATIONS = 600_000
DEFAULT_GRANTS = ("gold",)
LAYERS = ("bronze", "silver", "gold", "ops")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_GRANT = re.compile(r"^(bronze|silver|gold|ops)(\.(\*|[A-Za-z0-9_]+))?$")


def users_file(root: str, given: str | None = None) -> Path:
    """`given`, else `<root>/_sql/users.json` (a local root only: the server reads it with plain file IO)."""
    if given:
        return Path(given)
    folder = local_folder(root)
    if folder is None:
        raise ConfigError(f"storage root {root} is not a local folder: give the users file with --users FILE")
    return Path(folder) / "_sql" / "users.json"


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    try:
        kind, iterations, salt, digest = stored.split("$")
        if kind != "pbkdf2_sha256":
            return False
        actual = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(actual, base64.b64decode(digest))
    except ValueError:
        return False


def check_grant(grant: str) -> str:
    if not _GRANT.match(grant):
        raise ConfigError(f"grant {grant!r}: give a layer ({', '.join(LAYERS)}), layer.* (its quarantine tables "
                          "too) or layer.table")
    return grant


def load(path: Path) -> dict[str, Any]:
    """The file's users (name -> {password, grants}); none when there is no file."""
    if not path.exists():
        return {}
    try:
        users = json.loads(path.read_text("utf-8")).get("users", {})
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"the users file {path} is not goldsmith's JSON: {exc}") from None
    return dict(users)


def save(path: Path, users: dict[str, Any]) -> None:
    """Replace the file at once (the server never reads half of it), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".users-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"version": 1, "users": users}, out, indent=2, sort_keys=True)
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def add_user(path: Path, name: str, password: str | None, grants: list[str] | None = None) -> None:
    """Add `name` or set its password and grants. `password` None: a user of an LDAP directory, whose password
    the directory checks (`serve-sql --ldap-url`); the file only grants (it can log in through no other way)."""
    if not _NAME.match(name):
        raise ConfigError(f"user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    if password is not None and not password:
        raise ConfigError("the password is empty")
    users = load(path)
    kept = users.get(name, {}).get("grants")
    chosen = [check_grant(g) for g in grants] if grants else kept or list(DEFAULT_GRANTS)
    users[name] = {"password": hash_password(password) if password is not None else None, "grants": chosen}
    save(path, users)


def remove_user(path: Path, name: str) -> bool:
    users = load(path)
    if users.pop(name, None) is None:
        return False
    save(path, users)
    return True


def change_grants(path: Path, name: str, add: list[str], remove: list[str]) -> list[str]:
    users = load(path)
    if name not in users:
        raise ConfigError(f"no user {name!r} in {path}")
    grants = [g for g in users[name].get("grants", []) if g not in remove]
    grants += [check_grant(g) for g in add if g not in grants]
    users[name]["grants"] = grants
    save(path, users)
    return grants
