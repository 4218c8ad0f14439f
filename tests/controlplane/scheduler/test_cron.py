"""Crontab expressions mean what crontab means: days of the week count from Sunday (0 and 7), where
APScheduler's own numbers count from Monday."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.scheduler.config import SchedulerConfigError, cron_trigger, crontab_weekdays, load_scheduler_config

SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def fires(crontab: str, days: int = 14) -> set[str]:
    trigger, at, seen = cron_trigger(crontab), SATURDAY, set()
    while (at := trigger.get_next_fire_time(None, at + timedelta(seconds=1))) < SATURDAY + timedelta(days=days):
        seen.add(at.strftime("%a").lower())
    return seen


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1-5", {"mon", "tue", "wed", "thu", "fri"}),
        ("0", {"sun"}),
        ("7", {"sun"}),
        ("6,0", {"sat", "sun"}),
        ("5-7", {"fri", "sat", "sun"}),
        ("*/2", {"sun", "tue", "thu", "sat"}),
        ("mon-fri", {"mon", "tue", "wed", "thu", "fri"}),
        ("*", {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}),
    ],
)
def test_weekdays_are_numbered_as_crontab_numbers_them(field: str, days: set[str]) -> None:
    assert fires(f"0 9 * * {field}") == days


def test_a_monday_job_first_runs_on_monday() -> None:
    assert cron_trigger("0 9 * * 1").get_next_fire_time(None, SATURDAY) == datetime(2026, 11, 30, 9, tzinfo=UTC)


@pytest.mark.parametrize("field", ["8", "5-2", "*/0", "funday"])
def test_a_day_that_is_not_one_is_refused_naming_the_field(field: str, tmp_path) -> None:
    with pytest.raises(ValueError, match="day of week"):
        crontab_weekdays(field)
    path = tmp_path / "scheduler.yaml"
    path.write_text(f'jobs: {{checkpoint: {{cron: "0 9 * * {field}"}}}}\n')
    with pytest.raises(SchedulerConfigError, match=r"jobs\.checkpoint"):
        load_scheduler_config(path)
