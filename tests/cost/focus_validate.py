"""Run by the FOCUS validator's own interpreter (.venv/focus-validator): validates one CSV against FOCUS
1.0 and prints {"checks": N, "failed": [names]} as JSON."""

import importlib.resources
import json
import sys

import focus_validator.utils.download_currency_codes as currency_codes

# The validator reads its ISO 4217 list from a path relative to the working directory.
currency_codes.CURRENCY_CODE_CSV_PATH = str(importlib.resources.files("focus_validator.utils") / "currency_codes.csv")

from focus_validator.config_objects import ChecklistObjectStatus  # noqa: E402
from focus_validator.validator import Validator  # noqa: E402

validator = Validator(
    data_filename=sys.argv[1],
    output_destination=None,
    output_type="console",
    rules_version="1.0",
    override_filename=None,
)
validator.load()
result = validator.spec_rules.validate(validator.focus_data)
failed = [
    name
    for name, check in result.checklist.items()
    if check.status in (ChecklistObjectStatus.FAILED, ChecklistObjectStatus.ERRORED)
]
print(json.dumps({"checks": len(result.checklist), "failed": failed}))
