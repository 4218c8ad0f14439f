"""What the dashboard accepts as a username, a role and a password, and the error that says what is wrong.

name = normalise_username("Ana")          # "ana"
check_password("correct horse battery", username=name)
"""

from __future__ import annotations

import re
from typing import Literal, get_args

Role = Literal["oncall", "compliance", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
MIN_PASSWORD, MAX_PASSWORD = 12, 1024
MAX_USERNAME = 64
_USERNAME = re.compile(r"[a-z0-9._-]{1,64}")


class UserError(ValueError):
    """A dashboard account request the control plane refuses; the message names the problem and the fix."""


def normalise_username(name: str) -> str:
    """The username as stored: case-folded, 1 to 64 characters of a-z, 0-9, '.', '_' and '-'."""
    folded = name.strip().casefold()
    # ASCII only before folding too: some non-ASCII letters fold into ASCII ones ("K" Kelvin sign to "k").
    if not name.strip().isascii() or not _USERNAME.fullmatch(folded):
        shown = name if len(name) <= MAX_USERNAME else name[:MAX_USERNAME] + "..."
        raise UserError(
            f"username {shown!r} is not allowed: use 1 to {MAX_USERNAME} characters of a-z, 0-9, '.', '_' "
            "and '-' (upper case is folded to lower case), e.g. 'ana' or 'bo.smith'"
        )
    return folded


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}; pick one of those")
    return role


def check_password(password: str, *, username: str) -> None:
    """At least 12 characters, at most 1024, valid UTF-8 text, and not the username."""
    if len(password) < MIN_PASSWORD:
        raise UserError(
            f"the password has {len(password)} characters; use at least {MIN_PASSWORD} (a passphrase of a few "
            "words is easiest to remember)"
        )
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password has {len(password)} characters; use at most {MAX_PASSWORD}")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("the password is not valid UTF-8 text; type it again or pipe it as UTF-8") from None
    if password.strip().casefold() == username.casefold():
        raise UserError("the password is the username; choose a password nobody can guess from the name")
