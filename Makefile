# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-loaded lint install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# FinOps' FOCUS validator checks the test's sample bill; it pins older numpy and pandas than the
# dashboard's, so it lives in a venv of its own.
FOCUS_VENV := $(VENV)/focus-validator
FOCUS_STAMP := $(FOCUS_VENV)/.installed

$(FOCUS_STAMP): $(BIN)/python
	$(PYTHON) -m venv $(FOCUS_VENV)
	$(FOCUS_VENV)/bin/python -m pip install --quiet 'focus-validator==1.0.0' 'multimethod<2'
	touch $(FOCUS_STAMP)

demo: $(STAMP)
	$(BIN)/controlplane demo $(DEMO_ARGS)

# Three test workers (pytest-xdist): the suite waits on processes, databases and the clock more than on the CPU.
TEST_WORKERS ?= 3

test: $(STAMP) $(FOCUS_STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=20 $(PYTEST_ARGS)

# The tests whose outcome a slow machine could change, run again beside two CPU-bound processes.
test-loaded: $(STAMP)
	CONTROLPLANE_TEST_CPU_HOGS=2 $(BIN)/python -m pytest -m timing $(PYTEST_ARGS)

# The gates CI runs beside the tests: lint, format, types, and the import contracts (the architecture).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench.audit_log --quick $(BENCH_ARGS)
	$(BIN)/python -m bench.bet_placement --quick $(BENCH_ARGS)
	$(BIN)/python -m bench.dashboard --quick $(BENCH_ARGS)
	$(BIN)/python -m bench.event_pipeline --quick $(BENCH_ARGS)
	$(BIN)/python -m bench.loadgen_capacity --quick $(BENCH_ARGS)
	$(BIN)/python -m bench.login_timing --quick $(BENCH_ARGS)
	$(BIN)/python -m bench.odds_fanout --quick $(BENCH_ARGS)
	$(BIN)/python -m bench.otlp_ingest --quick $(BENCH_ARGS)
	$(BIN)/python -m bench.slo_eval --quick $(BENCH_ARGS)
	$(BIN)/python -m bench.slow_clients --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var/*.db var/*.db-* var/*.jsonl var/demo
