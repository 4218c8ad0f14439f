"""`controlplane policy`: the error budget policy in force per slice (ship, caution, freeze) and why."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from controlplane.cli.common import EXIT_OK, StoreUrl, TableOrJson, config_or_exit, fail, load_settings, store_engine
from controlplane.clock import parse_since, utcnow
from controlplane.formatting import budget_left, burn, utc
from controlplane.policy.evaluate import PolicyReport
from controlplane.policy.recorder import current_policy, recorded
from controlplane.policy.spec import BudgetPolicyError

policy_app = typer.Typer(
    help="The error budget policy: ship, caution (a second approver) or freeze (emergency changes only).",
    no_args_is_help=True,
)
EXIT_CAUTION, EXIT_FREEZE = 1, 2


def _render(states: PolicyReport, since: dict[str, str]) -> str:
    lines = [f"Error budget policy as of {utc(states.at)}"]
    for s in states.slices:
        lines.append(
            f"{s.slice:<16} {s.state.upper():<8} {s.reason}"
            + (f" (since {since[s.slice]})" if s.slice in since else "")
        )
        for p in s.slos:
            left = budget_left(p.budget_remaining, 1 - p.budget_remaining)
            lines.append(f"  {p.slo:<30} {p.state:<8} budget {left}, burn 1h {burn(p.burn_1h)}")
    return "\n".join(lines)


@policy_app.command("status")
def policy_status(
    at: Annotated[str | None, typer.Option(help="As of this instant (ISO 8601, or 2h for two hours ago).")] = None,
    store_url: StoreUrl = None,
    fmt: TableOrJson = "table",
) -> None:
    """Each slice's state under config/budget_policy.yaml, the rule's reason and each SLO's budget and burn.
    Exit 0 when every slice may ship, 1 when one is in caution, 2 when one is frozen, 3 when it cannot say."""
    settings = load_settings(store_url=store_url)
    config = config_or_exit(settings)
    try:
        when = parse_since(at) if at else utcnow()
    except (ValueError, OverflowError) as exc:
        raise fail(f"--at: {exc}; give an ISO 8601 time or a span such as 2h") from None
    store = store_engine(settings)
    try:
        states = current_policy(config, store, at=when)
        kept = {} if at else recorded(store)
    except BudgetPolicyError as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise fail(f"could not evaluate the policy: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    now_state = {s.slice: s.state for s in states.slices}
    since = {name: utc(row.since) for name, row in kept.items() if now_state.get(name) == row.state}
    if fmt == "json":
        typer.echo(json.dumps(states.to_dict(), indent=2))
    else:
        typer.echo(_render(states, since))
    worst = {s.state for s in states.slices}
    raise typer.Exit(EXIT_FREEZE if "freeze" in worst else EXIT_CAUTION if "caution" in worst else EXIT_OK)
