"""Dashboard accounts on SQLite and PostgreSQL: add, list, disable, enable, new passwords and roles, the
password hash, and a failed record undoing its change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from controlplane.users import (
    AccountChange,
    UserError,
    add_user,
    authenticate,
    create_session,
    disable_user,
    enable_user,
    find_user,
    list_users,
    session_user,
    set_password,
    set_role,
)
from controlplane.users.passwords import verify_password
from controlplane.users.tables import users_t
from tests.controlplane.users.conftest import NOW, PASSWORD


def test_added_users_are_listed_by_name_without_their_hash(store: Engine) -> None:
    add_user(store, "Zoe", role="compliance", password=PASSWORD, by="bo", now=NOW)
    added = add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW)
    assert (added.username, added.role, added.disabled, added.created_at) == ("ana", "oncall", False, NOW)
    users = list_users(store)
    assert [(u.username, u.role) for u in users] == [("ana", "oncall"), ("zoe", "compliance")]
    assert users[0] == added
    assert not hasattr(users[0], "password_hash") and "password_hash" not in users[0].to_dict()
    assert find_user(store, "ZOE") == users[1]
    assert find_user(store, "nobody") is None and find_user(store, "not a name!") is None


def test_the_hash_is_scrypt_with_its_parameters_never_the_password(store: Engine) -> None:
    add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW)
    with store.connect() as conn:
        stored = conn.execute(select(users_t.c.password_hash)).scalar_one()
    assert PASSWORD not in stored
    scheme, log2_n, r, p, salt, digest = stored.split("$")
    assert (scheme, log2_n, r, p) == ("scrypt", "15", "8", "1") and salt and digest
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "!", stored)
    add_user(store, "bo", role="oncall", password=PASSWORD, by="bo", now=NOW)
    with store.connect() as conn:
        both = conn.execute(select(users_t.c.password_hash)).scalars().all()
    assert len(set(both)) == 2, "the same password hashes differently for two users (salted)"


def test_disable_and_enable_change_only_what_needs_changing(store: Engine) -> None:
    add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW)
    change = disable_user(store, "ANA", by="bo", now=NOW)
    assert change == AccountChange("disable", "ana", "oncall", "bo", NOW)
    assert find_user(store, "ana").disabled  # type: ignore[union-attr]
    assert disable_user(store, "ana", by="bo", now=NOW) is None
    assert enable_user(store, "ana", by="bo", now=NOW) == AccountChange("enable", "ana", "oncall", "bo", NOW)
    assert not find_user(store, "ana").disabled  # type: ignore[union-attr]
    assert enable_user(store, "ana", by="bo", now=NOW) is None


def test_enable_lifts_a_lockout(store: Engine) -> None:
    add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW)
    for _ in range(5):
        authenticate(store, "ana", "not the password", now=NOW)
    assert find_user(store, "ana").locked(NOW)  # type: ignore[union-attr]
    assert enable_user(store, "ana", by="bo", now=NOW) is not None
    assert authenticate(store, "ana", PASSWORD, now=NOW).ok


@pytest.mark.parametrize(
    ("username", "role", "password", "message"),
    [
        ("ana", "boss", PASSWORD, "role 'boss' is not one of oncall, compliance, admin"),
        ("", "oncall", PASSWORD, "username '' is not allowed"),
        ("ana smith", "oncall", PASSWORD, "username 'ana smith' is not allowed"),
        ("a" * 65, "oncall", PASSWORD, "1 to 64 characters"),
        ("\u212aarl", "oncall", PASSWORD, "is not allowed"),  # the Kelvin sign folds to 'k'
        ("ana", "oncall", "short pass", "has 10 characters; use at least 12"),
        ("ana", "oncall", "x" * 1025, "use at most 1024"),
        ("ana.b-long_name", "oncall", "ANA.B-LONG_NAME", "the password is the username"),
    ],
)
def test_bad_accounts_are_refused_saying_what_to_do(
    store: Engine, username: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        add_user(store, username, role=role, password=password, by="bo", now=NOW)
    assert list_users(store) == []


def test_a_name_in_use_is_refused_and_the_first_account_kept(store: Engine) -> None:
    add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW)
    with pytest.raises(UserError, match=r"'ana' already exists.*controlplane users password ana"):
        add_user(store, "Ana", role="admin", password="another good password", by="bo", now=NOW)
    assert [(u.username, u.role) for u in list_users(store)] == [("ana", "oncall")]
    assert authenticate(store, "ana", PASSWORD, now=NOW).ok


@pytest.mark.parametrize(
    "change",
    [
        lambda store: disable_user(store, "nobody", by="bo"),
        lambda store: enable_user(store, "nobody", by="bo"),
        lambda store: set_password(store, "nobody", PASSWORD, by="bo"),
        lambda store: set_role(store, "nobody", "admin", by="bo"),
    ],
    ids=["disable", "enable", "password", "role"],
)
def test_changing_an_unknown_user_says_who_there_is(store: Engine, change) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match="no dashboard user is named 'nobody'; `controlplane users list`"):
        change(store)


def test_a_new_password_replaces_the_old_and_ends_sessions(store: Engine) -> None:
    user = add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW)
    token = create_session(store, user, NOW)
    with pytest.raises(UserError, match="at least 12"):
        set_password(store, "ana", "too short", by="bo", now=NOW)
    assert session_user(store, token, NOW) is not None, "a refused password changes nothing"
    change = set_password(store, "ana", "a brand new passphrase", by="bo", now=NOW)
    assert change.action == "password"
    assert session_user(store, token, NOW) is None
    assert not authenticate(store, "ana", PASSWORD, now=NOW).ok
    assert authenticate(store, "ana", "a brand new passphrase", now=NOW).ok


class Refused(Exception):
    pass


def _refuse(change: AccountChange) -> None:
    raise Refused(change.action)


def test_a_failed_record_undoes_the_change(store: Engine) -> None:
    recorded: list[AccountChange] = []
    user = add_user(store, "ana", role="oncall", password=PASSWORD, by="bo", now=NOW, record=recorded.append)
    assert recorded == [AccountChange("add", "ana", "oncall", "bo", NOW)]
    token = create_session(store, user, NOW)
    with pytest.raises(Refused):
        add_user(store, "zoe", role="admin", password=PASSWORD, by="bo", now=NOW, record=_refuse)
    assert find_user(store, "zoe") is None
    with pytest.raises(Refused):
        disable_user(store, "ana", by="bo", now=NOW, record=_refuse)
    with pytest.raises(Refused):
        set_role(store, "ana", "admin", by="bo", now=NOW, record=_refuse)
    with pytest.raises(Refused):
        set_password(store, "ana", "a brand new passphrase", by="bo", now=NOW, record=_refuse)
    assert find_user(store, "ana") == user
    assert session_user(store, token, NOW + timedelta(minutes=1)) == user, "the session is back too"
    assert authenticate(store, "ana", PASSWORD, now=NOW).ok
