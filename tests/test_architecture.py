"""The architecture holds: import contracts kept, every control-plane module in a layer, the dashboard entry thin."""

from __future__ import annotations

import ast
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import controlplane

ROOT = Path(__file__).parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
PACKAGES = ("controlplane", "collectors", "audit", "sample_platform", "dashboards")


def _layered_modules() -> set[str]:
    names: set[str] = set()
    for contract in CONFIG["contracts"]:
        if contract["type"] == "layers":
            for layer in contract["layers"]:
                names.update(part.strip().strip("()") for part in layer.replace("|", ":").split(":"))
    return names


def test_import_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of the dev extra: pip install -e '.[dev]'"
    result = subprocess.run([lint_imports], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_every_control_plane_module_has_a_layer() -> None:
    modules = {f"controlplane.{info.name}" for info in pkgutil.iter_modules(controlplane.__path__)}
    assert modules, "no modules found"
    assert sorted(modules - _layered_modules()) == []


def test_the_dashboard_entry_point_reads_only_through_the_control_plane() -> None:
    tree = ast.parse((ROOT / "streamlit_app.py").read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported & set(PACKAGES) <= {"controlplane", "dashboards"}


def test_no_module_is_longer_than_one_sitting() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert long == {}
