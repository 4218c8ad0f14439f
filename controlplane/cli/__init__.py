"""The `controlplane` command: `controlplane <group> <verb>`, one module per command group. Thin: it calls the
domain packages and renders what they return.

Exit codes for checks meant for cron: 0 ok, 1 warning, 2 critical, 3 unknown or usage error.
"""

from __future__ import annotations

import sys

import typer

from controlplane.cli.alerts import alerts_app
from controlplane.cli.audit import audit_app
from controlplane.cli.checklist import checklist_app, drill_app
from controlplane.cli.collector import collector_app, sli_app
from controlplane.cli.common import EXIT_UNKNOWN
from controlplane.cli.cost import cost_app
from controlplane.cli.dashboard import dashboard
from controlplane.cli.demo import demo
from controlplane.cli.faults import faults_app
from controlplane.cli.platform import platform_app
from controlplane.cli.scheduler import scheduler
from controlplane.cli.slo import slo_app
from controlplane.cli.users import users_app

app = typer.Typer(
    help="SRE observability and compliance control plane for betting platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
platform_app.add_typer(faults_app, name="faults")
app.add_typer(platform_app, name="platform")
app.add_typer(collector_app, name="collector")
app.add_typer(sli_app, name="sli")
app.add_typer(slo_app, name="slo")
app.add_typer(audit_app, name="audit")
app.add_typer(checklist_app, name="checklist")
app.add_typer(alerts_app, name="alerts")
app.add_typer(drill_app, name="drill")
app.add_typer(cost_app, name="cost")
app.add_typer(users_app, name="users")
app.command("demo")(demo)
app.command("dashboard")(dashboard)
app.command("scheduler")(scheduler)


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
    sys.exit(code if isinstance(code, int) else 0)
