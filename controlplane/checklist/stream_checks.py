"""Checks of the event stream, read from the broker as it is now: the audit consumer group's lag, and
dead letters waiting for a replay. Without CONTROLPLANE_NATS_URL the audit log is fed in-process (there
is no consumer to lag and no dead-letter subject), and the checks pass saying so."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.checklist.context import CheckContext
from controlplane.checklist.results import Outcome
from controlplane.checklist.spec import DeadLetters, StreamLag
from controlplane.streams.status import GroupStatus, NoConsumerGroup, group_status
from controlplane.streams.wire import DEFAULT_DURABLE

IN_PROCESS = "no event stream configured (CONTROLPLANE_NATS_URL unset): the audit log is fed in-process"


def _status(ctx: CheckContext, durable: str) -> GroupStatus | Outcome:
    url = ctx.settings.nats_url
    if not ctx.live:
        return Outcome.unknown("the stream is read as it is now; this run is for another instant", at=str(ctx.at))
    try:
        return asyncio.run(group_status(url, durable=durable, now=ctx.now))
    except NoConsumerGroup as exc:
        return Outcome.failed(f"{exc}: is `controlplane audit ingest` running?", nats_url=url)
    except Exception as exc:  # the broker away, refused, timed out: not known, never a pass
        return Outcome.unknown(f"cannot read the stream at {url}: {type(exc).__name__}: {exc}", nats_url=url)


def stream_lag(params: StreamLag, ctx: CheckContext) -> Outcome:
    if not ctx.settings.nats_url:
        return Outcome.passed(IN_PROCESS)
    status = _status(ctx, params.durable)
    if isinstance(status, Outcome):
        return status
    evidence: dict[str, Any] = {**status.to_dict(), "at_most_seconds": params.at_most_seconds}
    if status.lag_seconds > params.at_most_seconds:
        return Outcome.failed(
            f"consumer group {params.durable} is {status.lag_seconds:.1f} s behind ({status.behind} events not "
            f"yet appended), more than {params.at_most_seconds:g} s: add ingesters or see the stream runbook",
            **evidence,
        )
    return Outcome.passed(
        f"consumer group {params.durable} is {status.lag_seconds:.1f} s behind ({status.behind} events waiting)",
        **evidence,
    )


def dead_letters(params: DeadLetters, ctx: CheckContext) -> Outcome:
    if not ctx.settings.nats_url:
        return Outcome.passed(IN_PROCESS)
    status = _status(ctx, DEFAULT_DURABLE)
    if isinstance(status, Outcome):
        return status
    evidence = {"dead_letters": status.dead_letters, "at_most": params.at_most}
    if status.dead_letters > params.at_most:
        return Outcome.failed(
            f"{status.dead_letters} dead letters wait for a fix and a replay "
            "(`controlplane audit dead-letters` lists them, with why each failed)",
            **evidence,
        )
    return Outcome.passed(f"{status.dead_letters} dead letters on the stream", **evidence)
