"""The hand-off between pages and the dashboard's routes: one-time cookie claims, single-sign-on grants,
the export shelf; the claim route's cookie attributes, and the export route's refusals."""

from __future__ import annotations

import asyncio
import json
import os
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, func, select
from starlette.requests import Request
from starlette.responses import Response

from audit.schema import entries
from dashboards import handoff, routes
from dashboards.handoff import Claims, Export, Grantee, Grants, Shelf
from tests.dashboards.test_pages import dashboard  # noqa: F401


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_claim_is_taken_once_and_only_within_its_minute() -> None:
    clock = Clock()
    claims = Claims(clock)
    nonce = claims.register("c", "v", 60)
    assert not claims.taken(nonce)
    assert claims.take(nonce) == handoff.Claim("c", "v", 60)
    assert claims.taken(nonce) and claims.take(nonce) is None
    late = claims.register("c", "w", 60)
    clock.now += handoff.CLAIM_SECONDS + 1
    assert claims.take(late) is None
    assert claims.take("never-issued") is None


def test_grants_last_until_revoked_or_expired() -> None:
    clock = Clock()
    grants = Grants(clock)
    ana = Grantee("ana@example.com", "oncall", "oidc")
    first, second = grants.issue(ana, 100), grants.issue(ana, 100)
    assert grants.find(first) == grants.find(second) == ana and first != second
    grants.revoke(first)
    assert grants.find(first) is None and grants.find(second) == ana
    clock.now += 101
    assert grants.find(second) is None


def _export(owner: str, data: bytes) -> Export:
    return Export(owner, frozenset({"admin"}), "cost-report", "cost-report.csv", "text/csv", data)


def test_the_shelf_forgets_expired_exports_and_the_oldest_past_its_size() -> None:
    clock = Clock()
    shelf = Shelf(clock, max_bytes=10)
    old = shelf.put(_export("a", b"123456"))
    new = shelf.put(_export("a", b"7890ab"))
    assert shelf.get(old) is None and shelf.get(new) is not None  # 12 bytes > 10: the oldest went
    clock.now += handoff.EXPORT_SECONDS + 1
    assert shelf.get(new) is None


@pytest.mark.parametrize(("dashboard_url", "secure"), [("http://127.0.0.1:8501", False), ("https://cp.example", True)])
def test_the_claim_route_sets_an_http_only_strict_cookie(
    monkeypatch: pytest.MonkeyPatch, dashboard_url: str, secure: bool
) -> None:
    monkeypatch.setenv("CONTROLPLANE_DASHBOARD_URL", dashboard_url)
    nonce = handoff.CLAIMS.register(handoff.SESSION_COOKIE, "the-token", 600)
    answer = _claim(nonce)
    assert answer.status_code == 204
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("controlplane_session=the-token;")
    parts = {p.strip().lower() for p in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/", "max-age=600"} <= parts
    assert ("secure" in parts) is secure
    again = _claim(nonce)
    assert again.status_code == 404 and again.headers["content-type"] == "application/problem+json"
    assert "set-cookie" not in again.headers


def _claim(nonce: str) -> Response:
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/api/session/claim",
        "query_string": urlencode({"nonce": nonce}).encode(),
        "headers": [(b"host", b"127.0.0.1:8501")],
        "server": ("127.0.0.1", 8501),
    }
    return asyncio.run(routes.claim(Request(scope)))


def _exports_recorded(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(entries.c.subject.like("export:%"))).scalar() or 0)


def test_the_export_route_refuses_other_browsers_and_roles_and_an_unrecordable_fetch(
    dashboard: Engine,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grant = handoff.GRANTS.issue(Grantee("sso@example.com", "oncall", "oidc"), 600)
    mine = handoff.SHELF.put(_export(handoff.digest(grant), b"a,b\n1,2\n"))
    cookies = {handoff.GRANT_COOKIE: grant}
    assert routes.serve_export(mine, {}).status_code == 401
    assert routes.serve_export(mine, {handoff.GRANT_COOKIE: "forged"}).status_code == 401
    other = handoff.GRANTS.issue(Grantee("other@example.com", "admin", "oidc"), 600)
    assert routes.serve_export(mine, {handoff.GRANT_COOKIE: other}).status_code == 404
    assert routes.serve_export(mine, cookies).status_code == 403  # oncall may not take an admin-only export
    assert _exports_recorded(dashboard) == 0

    admin_grant = handoff.GRANTS.issue(Grantee("boss@example.com", "admin", "oidc"), 600)
    theirs = handoff.SHELF.put(_export(handoff.digest(admin_grant), b"a,b\n1,2\n"))
    served = routes.serve_export(theirs, {handoff.GRANT_COOKIE: admin_grant})
    assert served.status_code == 200 and served.body == b"a,b\n1,2\n"
    assert served.headers["cache-control"] == "no-store"
    assert _exports_recorded(dashboard) == 1

    audit_url = os.environ["CONTROLPLANE_AUDIT_URL"]
    monkeypatch.setenv("CONTROLPLANE_AUDIT_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")  # refused
    refused = routes.serve_export(theirs, {handoff.GRANT_COOKIE: admin_grant})
    assert refused.status_code == 503 and json.loads(bytes(refused.body))["type"] == "/problems/audit-unavailable"
    monkeypatch.setenv("CONTROLPLANE_AUDIT_URL", audit_url)
    assert _exports_recorded(dashboard) == 1
    handoff.GRANTS.revoke(admin_grant)
    assert routes.serve_export(theirs, {handoff.GRANT_COOKIE: admin_grant}).status_code == 401
