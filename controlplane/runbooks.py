"""Runbooks as code: Markdown files (`NAME.md`) in the runbooks directory (`config/runbooks`,
CONTROLPLANE_RUNBOOKS_PATH), named by an SLO or a checklist check as `runbook: NAME`, or a URL.

Usage:

    reference_problem("runbooks/bet-placement.md")   # "... write `runbook: bet-placement` ..." (None when fine)
    book = read_runbook(settings.runbooks_path, "bet-placement")   # Runbook; RunbookNotFound lists the others
    runbook_link("bet-placement", dashboard_url=settings.dashboard_url)
    # 'http://127.0.0.1:8501/runbook?name=bet-placement'; a URL is its own link
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

RUNBOOK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
PAGE = "runbook"  # the dashboard page that shows a runbook file: /runbook?name=NAME
# A checklist's runbook may be free text; a word this close to a runbook's name is taken for a typo of it.
TYPO_CUTOFF = 0.85


class RunbookNotFound(LookupError):
    """No runbook file by that name; the message names the directory and the runbooks it holds."""


@dataclass(frozen=True)
class Runbook:
    """One runbook file: its name (`bet-placement`), where it is, and its Markdown."""

    name: str
    path: Path
    text: str

    @property
    def title(self) -> str:
        """The first `# ` heading, else the name."""
        for line in self.text.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
        return self.name

    @property
    def body(self) -> str:
        """The Markdown without its first `# ` heading (a page shows that as its title)."""
        lines = self.text.splitlines()
        for index, line in enumerate(lines):
            if line.startswith("# "):
                return "\n".join(lines[:index] + lines[index + 1 :]).strip() + "\n"
        return self.text


def is_url(reference: str) -> bool:
    """An http:// or https:// URL with a host and no spaces."""
    parts = urlsplit(reference)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(c.isspace() for c in reference)


def is_name(reference: str) -> bool:
    """Lower-case letters, digits and hyphens: a file `NAME.md` of the runbooks directory."""
    return RUNBOOK_NAME.fullmatch(reference) is not None


def reference_problem(reference: str) -> str | None:
    """Why `reference` is neither a runbook name nor an http(s) URL, with how to write it; None if it is one."""
    if is_name(reference) or is_url(reference):
        return None
    stem = reference.strip().rsplit("/", 1)[-1].removesuffix(".md").strip().lower()
    if stem != reference and is_name(stem):
        return (
            f"{reference!r} is not how a runbook is named; write `runbook: {stem}` for the file {stem}.md of the "
            "runbooks directory (config/runbooks, CONTROLPLANE_RUNBOOKS_PATH), or give an http(s):// URL"
        )
    return (
        f"{reference!r} is neither a runbook name nor a URL; write the name of a file of the runbooks directory "
        "without .md (lower-case letters, digits and hyphens: `runbook: bet-placement` for "
        "config/runbooks/bet-placement.md), or an http(s):// URL"
    )


def available(directory: Path) -> list[str]:
    """The names of the runbooks in `directory`, sorted; none when it does not exist."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.md") if p.is_file() and is_name(p.stem))


def runbook_path(directory: Path, name: str) -> Path:
    """Where the runbook `name` lives. A name is checked first, so a link's `?name=` cannot leave the directory."""
    if not is_name(name):
        raise RunbookNotFound(f"{name!r} is not a runbook name (lower-case letters, digits and hyphens)")
    return Path(directory) / f"{name}.md"


def _listing(directory: Path) -> str:
    names = available(directory)
    return f"runbooks there: {', '.join(names)}" if names else "it holds no runbooks"


def missing_problem(directory: Path, reference: str, *, free_text: bool = False) -> str | None:
    """Why the runbook `reference` names cannot be found in `directory`, with the fix; None for a URL or a
    file that exists. With `free_text` (a checklist's runbook, which may be an instruction), a word is a
    problem only when it is no runbook but close to one's name: a typo."""
    directory = Path(directory)
    if is_url(reference):
        return None
    if not is_name(reference):
        return None if free_text else reference_problem(reference)
    path = directory / f"{reference}.md"
    if path.is_file():
        return None
    names = available(directory)
    if free_text:
        close = difflib.get_close_matches(reference, names, n=1, cutoff=TYPO_CUTOFF)
        if not close:
            return None
        return (
            f"no runbook {reference!r} in {directory}; did you mean `runbook: {close[0]}`? (a word this close "
            "to a runbook's name is taken for a typo of it; an instruction in words is shown as it is)"
        )
    if not directory.is_dir():
        return (
            f"no runbooks directory {directory} to find {reference!r} in; set CONTROLPLANE_RUNBOOKS_PATH to "
            "the folder of runbook files (default config/runbooks), or give an http(s):// URL"
        )
    close = difflib.get_close_matches(reference, names, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]}? " if close else ""
    return (
        f"no runbook {reference!r}: {path} does not exist ({guess}{_listing(directory)}); write that file, "
        "name one of those, or give an http(s):// URL"
    )


def read_runbook(directory: Path, name: str) -> Runbook:
    """The runbook `name` of `directory`; RunbookNotFound (naming what there is) when there is no such file."""
    directory = Path(directory)
    path = runbook_path(directory, name)
    if not directory.is_dir():
        raise RunbookNotFound(
            f"the runbooks directory {directory} does not exist; set CONTROLPLANE_RUNBOOKS_PATH to the folder "
            "of runbook files"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunbookNotFound(f"no runbook {name!r} in {directory} ({_listing(directory)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunbookNotFound(f"{path} cannot be read ({type(exc).__name__}); save it as UTF-8 text") from None
    return Runbook(name=name, path=path, text=text)


def runbook_link(reference: str, *, dashboard_url: str) -> str:
    """The link a person (or Alertmanager's `runbook_url`) follows: a URL as it is, a runbook name as the
    dashboard's runbook page."""
    if is_url(reference):
        return reference
    return f"{dashboard_url.rstrip('/')}/{PAGE}?name={quote(reference, safe='')}"


def link_for(text: str, *, directory: Path, dashboard_url: str) -> str | None:
    """For a checklist check's runbook (a name, a URL or an instruction): its link, or None for text."""
    if is_url(text) or (is_name(text) and (Path(directory) / f"{text}.md").is_file()):
        return runbook_link(text, dashboard_url=dashboard_url)
    return None
