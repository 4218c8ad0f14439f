"""The one clock: timezone-aware UTC, replaceable in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Databases that drop the zone (SQLite) hand back naive datetimes; they were stored as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_text(moment: datetime) -> str:
    """An instant as ISO 8601 UTC with a trailing Z (a naive time is taken as UTC)."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'30s', '90m', '2h', '1d', '2w': a whole number of one unit."""
    text = text.strip()
    number = text[:-1]
    if text and text[-1] in _UNITS and number.isascii() and number.isdigit():
        try:
            return timedelta(seconds=int(number) * _UNITS[text[-1]])
        except OverflowError:
            raise ValueError(f"{text!r} is too long a duration") from None
    raise ValueError(f"cannot read {text!r} as a duration: use a whole number and a unit, like 30s, 5m, 2h, 1d or 2w")


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """'90m', '2h', '1d', '2w' back from now, or an ISO 8601 time (UTC if it has no zone)."""
    text = text.strip()
    now = now or utcnow()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: use 90m, 2h, 1d, 2w or an ISO 8601 time") from None
