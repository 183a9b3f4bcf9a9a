"""The SQL server's users file and its command: hashes not passwords, grants checked, the file replaced whole;
the refusals that need no server (no user yet, --no-auth beyond loopback)."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from goldsmith.cli import main
from goldsmith.errors import ConfigError
from goldsmith.sql_users import add_user, change_grants, hash_password, load, remove_user, verify_password


def test_a_password_is_kept_as_a_salted_slow_hash() -> None:
    one, two = hash_password("s3cret"), hash_password("s3cret")
    kind, iterations, _, _ = one.split("$")
    assert kind == "pbkdf2_sha256" and int(iterations) >= 600_000 and one != two  # a salt of its own
    assert "s3cret" not in one
    assert verify_password(one, "s3cret") and not verify_password(one, "s3cret ") and not verify_password(one, "")
    assert not verify_password("plain:s3cret", "s3cret")


def test_users_are_added_granted_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "_sql" / "users.json"
    add_user(path, "ann", "pw")
    assert load(path)["ann"]["grants"] == ["gold"]  # gold only by default
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert change_grants(path, "ann", ["silver.*", "ops"], ["gold"]) == ["silver.*", "ops"]
    add_user(path, "ann", "new password")  # a new password keeps the grants
    assert load(path)["ann"]["grants"] == ["silver.*", "ops"]
    assert verify_password(load(path)["ann"]["password"], "new password")
    with pytest.raises(ConfigError, match="give a layer"):
        change_grants(path, "ann", ["/etc"], [])
    with pytest.raises(ConfigError, match="user name"):
        add_user(path, "a b", "pw")
    with pytest.raises(ConfigError, match="empty"):
        add_user(path, "bob", "")
    assert remove_user(path, "ann") and not remove_user(path, "ann")
    assert json.loads(path.read_text())["users"] == {}
    assert not list(path.parent.glob(".users-*"))


def test_the_users_command_reads_the_password_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    root = tmp_path / "lake"
    assert main(["serve-sql", "users", "add", "cy", "gold.flight_features", "--root", str(root)]) == 0
    stored = load(root / "_sql" / "users.json")["cy"]
    assert verify_password(stored["password"], "from stdin") and stored["grants"] == ["gold.flight_features"]
    assert main(["serve-sql", "users", "list", "--root", str(root)]) == 0
    assert "cy" in capsys.readouterr().out
    assert main(["serve-sql", "users", "remove", "nobody", "--root", str(root)]) == 1


def test_serving_without_users_or_beyond_loopback_without_auth_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve-sql", "--root", str(tmp_path / "lake")]) == 2
    assert "no user in" in capsys.readouterr().err
    assert main(["serve-sql", "--root", str(tmp_path / "lake"), "--no-auth", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--no-auth" in err and "loopback" in err and len(err.strip().splitlines()) == 1


def test_an_ldap_user_has_grants_and_no_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "lake"
    assert main(["serve-sql", "users", "add", "dee", "silver.*", "--no-password", "--root", str(root)]) == 0
    assert load(root / "_sql" / "users.json")["dee"] == {"password": None, "grants": ["silver.*"]}
    capsys.readouterr()
    assert main(["serve-sql", "users", "list", "--root", str(root)]) == 0
    assert "(LDAP)" in capsys.readouterr().out


@pytest.mark.parametrize(("flags", "said"), [
    (["--ldap-url", "ldap://127.0.0.1:1"], "go together"),
    (["--ldap-url", "http://x", "--ldap-user-dn", "uid={user},dc=x"], "ldap://HOST:PORT"),
    (["--ldap-url", "ldap://127.0.0.1:1", "--ldap-user-dn", "uid=x,dc=x"], "{user} once"),
    (["--ldap-url", "ldap://127.0.0.1:1", "--ldap-user-dn", "uid={user}", "--no-auth"], "contradict"),
    (["--max-rows", "-1"], "--max-rows"),
])
def test_bad_ldap_and_limit_flags_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], said: str,
) -> None:
    assert main(["serve-sql", "--root", str(tmp_path / "lake"), *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err
