"""`controlplane platform faults`: set, list and clear game-day faults on a running platform (admin API)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import typer

from controlplane.cli.common import AdminToken, TableOrJson, Target, fail

faults_app = typer.Typer(help="Game-day faults on a running platform (each expires by itself).", no_args_is_help=True)


def _faults_client(target: str, admin_token: str | None) -> httpx.Client:
    if not admin_token:
        raise fail("faults need the admin token: pass --admin-token or set CONTROLPLANE_PLATFORM_ADMIN_TOKEN")
    return httpx.Client(base_url=target.rstrip("/"), headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)


def _call(send: Callable[[], httpx.Response]) -> Any:
    try:
        response = send()
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the platform: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise fail(f"{response.status_code}: {detail}")
    return response.json()


def render_faults(faults: list[dict[str, Any]], fmt: str, empty: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps(faults, indent=2))
        return
    if not faults:
        typer.echo(empty)
        return
    typer.echo(f"{'id':<13} {'kind':<12} {'route':<28} {'settings':<34} {'ttl left':>9}")
    for f in faults:
        knobs = {
            "latency": f"{f['latency_ms']}ms ±{f['jitter_ms']}ms",
            "db_latency": f"{f['latency_ms']}ms ±{f['jitter_ms']}ms per statement",
            "broker_slow": f"{f['latency_ms']}ms per event",
            "error_rate": f"{f['error_rate']:.0%} -> {f['error_status']}",
        }.get(f["kind"], "")
        if f.get("synthetic_only"):
            knobs = f"{knobs}, synthetic only"
        typer.echo(f"{f['id']:<13} {f['kind']:<12} {f['route']:<28} {knobs:<34} {f['ttl_remaining_seconds']:>8.0f}s")


@faults_app.command("set")
def faults_set(
    kind: Annotated[str, typer.Argument(help="latency, error_rate, db_latency, cache_off, broker_slow or lock_wait.")],
    ttl: Annotated[float, typer.Option("--ttl", help="Seconds until the fault ends by itself.")] = 300,
    route: Annotated[str, typer.Option(help='Route for latency/error_rate: "POST /v1/bets", "/v1/bets" or "*".')] = "*",
    latency_ms: Annotated[int, typer.Option(help="Added delay in ms (latency, db_latency, broker_slow).")] = 0,
    jitter_ms: Annotated[int, typer.Option(help="Jitter around the delay, ms.")] = 0,
    error_rate: Annotated[float, typer.Option(help="Share of requests failed, 0..1 (error_rate).")] = 0.0,
    error_status: Annotated[int, typer.Option(help="HTTP status of injected errors.")] = 503,
    synthetic_only: Annotated[
        bool,
        typer.Option(
            "--synthetic-only",
            help="Act only on synthetic requests (header X-Synthetic), so probes see the fault and players "
            "do not (latency, error_rate).",
        ),
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why: recorded in the audit trail.")] = None,
    actor: Annotated[str, typer.Option(help="Who: recorded in the audit trail.", envvar="USER")] = "admin",
    target: Target = "http://127.0.0.1:8080",
    admin_token: AdminToken = None,
    fmt: TableOrJson = "table",
) -> None:
    """Inject a fault into a running platform."""
    body = {
        "kind": kind,
        "ttl_seconds": ttl,
        "route": route,
        "latency_ms": latency_ms,
        "jitter_ms": jitter_ms,
        "error_rate": error_rate,
        "error_status": error_status,
        "actor": actor,
        "reason": reason,
    }
    if synthetic_only:  # only when asked: a platform without the flag still takes every other fault
        body["synthetic_only"] = True
    with _faults_client(target, admin_token) as http:
        fault = _call(lambda: http.post("/v1/admin/faults", json=body))
    render_faults([fault], fmt, "")


@faults_app.command("list")
def faults_list(
    target: Target = "http://127.0.0.1:8080", admin_token: AdminToken = None, fmt: TableOrJson = "table"
) -> None:
    """List the faults in force."""
    with _faults_client(target, admin_token) as http:
        faults = _call(lambda: http.get("/v1/admin/faults"))["faults"]
    render_faults(faults, fmt, "no faults in force")


@faults_app.command("clear")
def faults_clear(
    kind: Annotated[str | None, typer.Option(help="Only faults of this kind.")] = None,
    fault_id: Annotated[str | None, typer.Option("--id", help="Only the fault with this id.")] = None,
    actor: Annotated[str, typer.Option(help="Who: recorded in the audit trail.", envvar="USER")] = "admin",
    target: Target = "http://127.0.0.1:8080",
    admin_token: AdminToken = None,
    fmt: TableOrJson = "table",
) -> None:
    """End faults now (all of them unless --kind or --id)."""
    params = {k: v for k, v in {"kind": kind, "id": fault_id, "actor": actor}.items() if v}
    with _faults_client(target, admin_token) as http:
        cleared = _call(lambda: http.delete("/v1/admin/faults", params=params))["cleared"]
    render_faults(cleared, fmt, "no faults were in force")
