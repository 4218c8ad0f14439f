"""OpenSLO v1 import and export; SLO spec changes go through one function and are recorded."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from controlplane.settings import Settings
from controlplane.slo.openslo import export_openslo, import_openslo
from controlplane.slo.spec import SloConfigError, apply_slo_changes, load_events, load_slos, spec_document
from tests.support import CONTROLPLANE

CONFIG = Path(__file__).parents[2] / "config"


def shipped():  # type: ignore[no-untyped-def]
    return load_slos(CONFIG / "slos.yaml", events=load_events(CONFIG / "events.yaml"))


def test_export_then_import_round_trips() -> None:
    specs = shipped()
    text = export_openslo(specs)
    docs = list(yaml.safe_load_all(text))
    assert {d["kind"] for d in docs} == {"SLO"} and {d["apiVersion"] for d in docs} == {"openslo/v1"}
    assert {d["spec"]["budgetingMethod"] for d in docs} == {"Occurrences", "Timeslices"}
    back = import_openslo(text, source="export.yaml")
    assert [spec_document(s) for s in back] == [spec_document(s) for s in specs]


BASE = {
    "apiVersion": "openslo/v1",
    "kind": "SLO",
    "metadata": {"name": "x"},
    "spec": {
        "indicator": {
            "spec": {"ratioMetric": {"total": {"metricSource": {"type": "controlplane", "spec": {"slice": "login"}}}}}
        },
        "timeWindow": [{"duration": "4w", "isRolling": True}],
        "budgetingMethod": "Occurrences",
        "objectives": [{"target": 0.99}],
    },
}


def _with(path: list[str], value) -> dict:  # type: ignore[no-untyped-def]
    doc = json.loads(json.dumps(BASE))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def test_weeks_map_to_days() -> None:
    [spec] = import_openslo(yaml.safe_dump(BASE), source="f.yaml")
    assert spec.window.rolling_days == 28 and spec.slice == "login" and spec.sli.kind == "ratio"


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (_with(["kind"], "SLI"), "only kind: SLO"),
        (_with(["apiVersion"], "openslo/v2alpha"), "only openslo/v1"),
        (
            _with(["spec", "indicator", "spec", "ratioMetric", "total", "metricSource", "type"], "prometheus"),
            "metricSource 'prometheus' does not map",
        ),
        (_with(["spec", "timeWindow"], [{"duration": "90m", "isRolling": True}]), "rolling duration '90m'"),
        (_with(["spec", "timeWindow"], [{"duration": "1Q", "isRolling": False}]), "only 1M"),
        (_with(["spec", "objectives"], [{"target": 0.9}, {"target": 0.99}]), "exactly one objective"),
        (_with(["spec", "budgetingMethod"], "RatioTimeslices"), "budgetingMethod"),
        (_with(["spec", "indicator"], {"metadata": {"name": "ref-only"}}), "inline indicator"),
        (_with(["spec", "objectives"], [{"target": 1.5}]), "objective"),
    ],
)
def test_what_does_not_map_is_refused_with_a_reason(doc, reason: str) -> None:
    with pytest.raises(SloConfigError) as error:
        import_openslo(yaml.safe_dump(doc), source="in.yaml")
    assert "in.yaml: SLO 'x'" in str(error.value) and reason in str(error.value)


def test_changes_go_through_one_function_and_are_recorded(tmp_path) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text((CONFIG / "slos.yaml").read_text())
    settings = Settings(
        slos_path=slos, change_log_path=tmp_path / "changes.jsonl", audit_url=f"sqlite:///{tmp_path / 'audit.db'}"
    )
    assert apply_slo_changes(settings, shipped(), actor="ana", events={}) == []  # nothing new
    tighter = shipped()[0].model_copy(update={"objective": 0.9995})
    [change] = apply_slo_changes(settings, [tighter], actor="ana", events={})
    assert change.subject == "bet-placement-availability" and change.actor == "ana"
    assert change.before["objective"] == 0.999 and change.after["objective"] == 0.9995
    assert load_slos(slos, events={})[0].objective == 0.9995
    lines = (tmp_path / "changes.jsonl").read_text().splitlines()
    assert [json.loads(line)["change"] for line in lines] == ["slo"]
    # ... and in the audit log, as a change entry
    from audit.log import AuditLog
    from controlplane.storage import make_engine

    log = AuditLog(make_engine(settings.audit_url), origin=settings.audit_origin)
    with log.engine.connect() as conn:
        from sqlalchemy import text

        stored = json.loads(conn.execute(text("SELECT entry FROM audit_entries")).scalar_one())
    assert (
        stored["kind"] == "change"
        and stored["actor"] == "ana"
        and stored["subject"] == "slo:bet-placement-availability"
    )
    assert stored["payload"]["after"]["objective"] == "0.9995"  # a decimal string, never a float


def test_import_cli(tmp_path) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text((CONFIG / "slos.yaml").read_text())
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(_with(["metadata", "name"], "login-weekly")))
    env = os.environ | {
        "CONTROLPLANE_CHANGE_LOG_PATH": str(tmp_path / "changes.jsonl"),
        "CONTROLPLANE_EVENTS_PATH": str(CONFIG / "events.yaml"),
    }
    done = subprocess.run(
        [CONTROLPLANE, "slo", "import", str(new), "--slos", str(slos), "--actor", "ana"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "login-weekly" in done.stdout and "login-weekly" in {s.name for s in load_slos(slos, events={})}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(["kind"], "Service")))
    refused = subprocess.run(
        [CONTROLPLANE, "slo", "import", str(bad), "--slos", str(slos)], capture_output=True, text=True, env=env
    )
    assert refused.returncode == 3 and "only kind: SLO" in refused.stderr and "Traceback" not in refused.stderr


def test_the_runbook_travels_as_an_annotation_and_comes_back() -> None:
    specs = shipped()
    docs = list(yaml.safe_load_all(export_openslo(specs)))
    assert {d["metadata"]["name"]: d["metadata"]["annotations"]["controlplane/runbook"] for d in docs} == {
        s.name: s.runbook for s in specs
    }
    assert all("runbook" not in d["spec"] for d in docs)  # OpenSLO's own fields stay as the standard has them
    [url] = import_openslo(
        yaml.safe_dump(_with(["metadata", "annotations"], {"controlplane/runbook": "https://wiki.example/login"})),
        source="in.yaml",
    )
    assert url.runbook == "https://wiki.example/login"
    [back] = import_openslo(export_openslo([url]), source="again.yaml")
    assert back == url
    [none] = import_openslo(yaml.safe_dump(BASE), source="in.yaml")
    assert none.runbook is None and "controlplane/runbook" not in export_openslo([none])


def test_a_runbook_annotation_in_the_wrong_form_is_refused_naming_the_annotation() -> None:
    doc = _with(["metadata", "annotations"], {"controlplane/runbook": "runbooks/login.md"})
    with pytest.raises(SloConfigError) as error:
        import_openslo(yaml.safe_dump(doc), source="in.yaml")
    assert str(error.value).startswith("in.yaml: SLO 'x': metadata.annotations.controlplane/runbook: ")
    assert "write `runbook: login`" in str(error.value)
