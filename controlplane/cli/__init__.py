"""The `controlplane` command: `controlplane <group> <verb>`, one module per command group. Thin: it calls the
domain packages and renders what they return.

Exit codes for checks meant for cron: 0 ok, 1 warning, 2 critical, 3 unknown or usage error.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from controlplane.cli.common import EXIT_UNKNOWN, cut_short_by_ctrl_c

# Each command group is imported when it is run, not before: `controlplane slo status` from cron loads
# the SLO engine, not the platform, the collector, the scheduler and the demo too (together they add
# about 0.5 s to every start, measured 2026-12-04). `--help` imports them all to list them.
COMMANDS: dict[str, tuple[str, str]] = {  # name -> (module, its Typer app or command function)
    "demo": ("controlplane.cli.demo", "demo"),
    "dashboard": ("controlplane.cli.dashboard", "dashboard"),
    "scheduler": ("controlplane.cli.scheduler", "scheduler"),
    "platform": ("controlplane.cli.platform", "platform_app"),
    "collector": ("controlplane.cli.collector", "collector_app"),
    "sli": ("controlplane.cli.collector", "sli_app"),
    "slo": ("controlplane.cli.slo", "slo_app"),
    "audit": ("controlplane.cli.audit", "audit_app"),
    "checklist": ("controlplane.cli.checklist", "checklist_app"),
    "alerts": ("controlplane.cli.alerts", "alerts_app"),
    "drill": ("controlplane.cli.checklist", "drill_app"),
    "cost": ("controlplane.cli.cost", "cost_app"),
    "users": ("controlplane.cli.users", "users_app"),
    "incidents": ("controlplane.cli.incidents", "incidents_app"),
    "policy": ("controlplane.cli.policy", "policy_app"),
    "trace": ("controlplane.cli.trace", "trace_app"),
}


class LazyCommands(TyperGroup):
    """The top-level group: lists every command, imports one only when it is looked up."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name]
        found: Any = getattr(importlib.import_module(module), attribute)
        command: Any
        if isinstance(found, typer.Typer):
            command = typer.main.get_group(found)  # a group even when it holds one verb (`collector serve`)
        else:  # a command function: a Typer of one command gives just that command
            single = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
            single.command(name)(found)
            command = typer.main.get_command(single)
        command.name = name
        return command


app = typer.Typer(
    cls=LazyCommands,
    help="SRE observability and compliance control plane for betting platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _controlplane() -> None:
    """SRE observability and compliance control plane for betting platforms."""


def main() -> None:
    """Run the CLI; a usage error (unknown option, bad value) exits 3 with its message, never a traceback."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="controlplane", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, missing argument
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNKNOWN)
    except Exception as exc:
        if cut_short_by_ctrl_c(exc):  # Ctrl-C inside a transaction: the rollback's error, not a bug
            sys.exit(130)
        raise
    sys.exit(code if isinstance(code, int) else 0)
