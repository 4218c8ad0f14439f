"""The sample platform stands alone: importing, building and serving it loads none of the control plane."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

OTHER_PACKAGES = ("controlplane", "collectors", "audit", "dashboards")

# Runs in a fresh interpreter: this test process has imported everything already.
SERVE_AND_LIST_MODULES = textwrap.dedent(
    """
    import asyncio
    import json
    import sys

    import httpx

    import sample_platform.api
    from sample_platform import db
    from sample_platform.settings import PlatformSettings

    data_dir = sys.argv[1]
    settings = PlatformSettings(
        environment="test",
        database_url=f"sqlite:///{data_dir}/platform.db",
        admin_token="standalone-admin-token",
        outbox_sink_path=f"{data_dir}/outbox.jsonl",
        price_mover_interval_seconds=0,
    )
    engine = db.make_engine(settings.database_url, **settings.engine_options())
    db.migrate(engine)
    engine.dispose()
    app = sample_platform.api.create_app(settings)


    async def serve() -> list[int]:
        admin = {"Authorization": "Bearer standalone-admin-token"}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://platform") as http:
                answers = [
                    await http.get("/v1/health"),
                    await http.get("/openapi.json"),
                    await http.post("/v1/accounts", json={"username": "standalone"}, headers=admin),
                    await http.get("/v1/markets"),
                    await http.get("/metrics"),
                ]
        return [answer.status_code for answer in answers]


    statuses = asyncio.run(serve())
    print(json.dumps({"statuses": statuses, "modules": sorted(sys.modules)}))
    """
)


def test_platform_serves_without_importing_the_control_plane(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LIST_MODULES, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 200, 201, 200, 200]
    loaded = [name for name in report["modules"] if name.split(".")[0] in OTHER_PACKAGES]
    assert loaded == [], f"the sample platform imported {loaded}"
    assert "sample_platform.api.app" in report["modules"]


@pytest.mark.parametrize("package", OTHER_PACKAGES)
def test_the_check_sees_other_packages(package: str) -> None:
    # The check above is only as good as its module list: importing one of ours must show up in it.
    code = f"import json, sys, {package}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert package in json.loads(done.stdout)
