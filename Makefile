# Kepler: `make run` starts the daemon and the example; `make test` runs the suite;
# `make bench` compares Kepler with supervisord, circus and pm2 (bench/).
# All create .venv and install what they need on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STATE  ?= $(CURDIR)/.state
EXAMPLE ?= examples/kepler.yaml

.PHONY: run stop test lint bench clean

$(BIN)/.installed: setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Start a daemon with its state under .state/ (unless one already runs there),
# then run the example attached: Ctrl+C stops its services. `make stop` ends the daemon.
run: $(BIN)/.installed
	KEPLER_DAEMON_PATH=$(STATE) $(BIN)/keplerctl daemon status >/dev/null 2>&1 || \
		KEPLER_DAEMON_PATH=$(STATE) $(BIN)/keplerctl daemon start -d
	KEPLER_DAEMON_PATH=$(STATE) $(BIN)/keplerctl -f $(EXAMPLE) start

stop: $(BIN)/.installed
	KEPLER_DAEMON_PATH=$(STATE) $(BIN)/keplerctl daemon stop

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 tests

lint: $(BIN)/.installed
	$(BIN)/ruff check keplerd tests bench

# The benchmark of issue #11: about 15 minutes on 2 cores (plus the peers' install,
# into bench/.scratch/, on first use). Writes bench/results/latest.{md,json} and the
# README's table. Not a test: `make test` never runs it. For iterating, see
# `$(BIN)/python bench/run.py --help` (--quick, --only kepler, --scenarios S1,S3).
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py --update-readme

clean:
	rm -rf $(VENV) $(STATE) build *.egg-info bench/.scratch
