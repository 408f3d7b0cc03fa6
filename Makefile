# Kepler: `make run` starts the daemon and the example; `make test` runs the suite.
# Both create .venv and install what they need on a fresh machine.

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

# Performance of the log path (as root): pump throughput against cat, --tail on 1 GiB against 1 MiB.
bench: $(BIN)/.installed
	$(BIN)/python bench/logs.py

lint: $(BIN)/.installed
	$(BIN)/ruff check keplerd tests bench

clean:
	rm -rf $(VENV) $(STATE) build *.egg-info
