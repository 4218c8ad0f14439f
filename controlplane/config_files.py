"""Reading the declarative YAML files under config/: errors that name the file, the item and the field.

Usage:

    raw = read_yaml(path, error=SloConfigError)
    problems = explain(path, raw, validation_error, list_key="slos", what="slo")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


def read_yaml(path: Path, *, error: type[ValueError], missing_hint: str) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path}: file not found; {missing_hint}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise error(
            f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); give a readable YAML file"
        ) from None


def explain(path: Path, raw: Any, exc: ValidationError, *, list_key: str, what: str) -> str:
    """One line per problem: `<file>: <what> '<name>': <field>: <message>`."""
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == list_key and isinstance(loc[1], int):
            try:
                where = f"{what} '{raw[list_key][loc[1]].get('name', loc[1])}': "
            except (KeyError, IndexError, TypeError, AttributeError):
                where = f"{what} #{loc[1]}: "
            loc = loc[2:]
        field_name = ".".join(str(p) for p in loc)
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {where}{field_name + ': ' if field_name else ''}{message}")
    return "; ".join(problems)
