"""The documentation stays true: the generated reference in docs/reference.md is current and names every
setting of both systems and every CLI verb; every relative link (and its #anchor) and every backticked
repository path or module in README.md and docs/*.md exists; the README stays within 250 lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controlplane.cli.reference import REFERENCE, refresh, walk
from controlplane.settings import Settings
from sample_platform.settings import PlatformSettings

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

# Top-level folders made at run time, never part of the repository: a path under them names what a
# command writes (`var/demo/report.json`, `.venv/bin/controlplane`), not a file to look for.
RUNTIME = {"var", ".venv"}
NOT_OURS = {".git", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis", "build", "dist"}
TOP_LEVEL = {p.name for p in ROOT.iterdir() if p.name not in RUNTIME | NOT_OURS and not p.name.endswith(".egg-info")}
PACKAGES = {name for name in TOP_LEVEL if (ROOT / name / "__init__.py").exists()}

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
MODULE = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks (commands and examples there name files of the
    user's machine, not of this repository)."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose(page):
        if match := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            repeat = counts.get(slug, 0)
            counts[slug] = repeat + 1
            found.add(slug if repeat == 0 else f"{slug}-{repeat}")
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    for line in prose(page):
        for target in LINK.findall(line):
            if SCHEME.match(target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{target}: no heading with that anchor in {linked.relative_to(ROOT)}")
    return broken


def names_a_repository_file(token: str) -> bool:
    first = token.split("/", 1)[0]
    return first in TOP_LEVEL and ("/" in token or (ROOT / token).is_file())


def exists(token: str) -> bool:
    if any(char in token for char in "*?["):
        return any(ROOT.glob(token))
    return (ROOT / token).exists()


def module_exists(dotted: str) -> bool:
    """`controlplane.slo.engine` is a module or package; `audit.verify.verify_bundle` a name in one."""
    parts = dotted.split(".")
    for depth in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:depth])
        rest = parts[depth:]
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file() or (base.is_dir() and not rest):
            return len(rest) <= 1 and (not rest or re.search(rf"\b{rest[0]}\b", source.read_text()) is not None)
    return False


def missing_paths(page: Path) -> list[str]:
    missing = []
    for line in prose(page):
        for span in CODE.findall(line.replace("\\|", "|")):
            for raw in span.split():
                token = raw.strip("\"'(),;")
                if "://" in token:
                    continue
                if names_a_repository_file(token):
                    if not exists(token):
                        missing.append(token)
                elif MODULE.fullmatch(token) and token.split(".")[0] in PACKAGES and not module_exists(token):
                    missing.append(token)
    return missing


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_exists(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_repository_path_named_exists(page: Path) -> None:
    assert missing_paths(page) == []


def test_the_readme_is_at_most_250_lines() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference, internals or notes to docs/"


def test_the_reference_is_current() -> None:
    text = (ROOT / REFERENCE).read_text()
    assert refresh(text) == text, (
        f"{REFERENCE}'s command reference or settings are stale: run "
        f"`python -m controlplane.cli.reference --write {REFERENCE}`"
    )


@pytest.mark.parametrize(("model", "prefix"), [(Settings, "CONTROLPLANE_"), (PlatformSettings, "PLATFORM_")])
def test_the_reference_documents_every_setting(model: type, prefix: str) -> None:
    text = (ROOT / REFERENCE).read_text()
    missing = [name for name in model.model_fields if f"`{prefix}{name.upper()}`" not in text]
    assert missing == []


def test_the_reference_documents_every_verb() -> None:
    text = (ROOT / REFERENCE).read_text()
    usages = [" ".join(("controlplane", *v.path, *v.arguments)) for v in walk() if not v.is_group]
    assert usages, "the CLI has no verbs"
    assert [usage for usage in usages if f"`{usage}`" not in text] == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("see `config/slos.yaml` and `audit/verify.py`", []),
        ("`config/nope.yaml`", ["config/nope.yaml"]),
        ("`controlplane.slo_nope` and `controlplane.slo.engine`", ["controlplane.slo_nope"]),
        ("`var/demo/report.json`, `/etc/prometheus/rules/slo-rules.yml`, `slo-rules.yml`", []),
        ('`python -m audit.verify bet-42.json --key "$KEY"`', []),
        ("```\ncat config/nope.yaml\n```", []),
    ],
)
def test_paths_are_told_apart_from_runtime_files(tmp_path: Path, text: str, found: list[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text(text + "\n")
    assert missing_paths(page) == found
