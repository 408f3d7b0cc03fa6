# Kepler: `make run` starts the daemon and the example; `make test` runs the suite;
# `make bench` compares Kepler with supervisord, circus and pm2 (bench/).
# All create .venv and install what they need on a fresh machine.
# `make install [PREFIX=/usr/local] [DESTDIR=]` installs Kepler as a system service;
# `make uninstall` removes it again (keeping /etc/kepler and the state dir).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STATE  ?= $(CURDIR)/.state
EXAMPLE ?= examples/kepler.yaml

# Where `make install` puts things. DESTDIR stages them (for a package); then the
# kepler group is not created unless CREATE_GROUP=yes.
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib/kepler
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
# Fixed: the daemon's own defaults (keplerd.conf may move the state dir).
SYSCONFDIR := /etc
STATEDIR   := /var/lib/kepler
GROUP      ?= kepler
CREATE_GROUP ?= $(if $(DESTDIR),no,yes)
# Tools the tests need beyond Python: Debian package names by command.
TEST_TOOLS ?= groff:groff-base zsh:zsh systemd-analyze:systemd redis-server:redis-server promtool:prometheus tmux:tmux

.PHONY: run stop test test-tools lint bench bench-logs bench-apply soak clean install uninstall

$(BIN)/.installed: setup.cfg setup.py keplerd/osproc/_clone_into.c keplerd/logs/_stamp.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Start a daemon with its state under .state/ (unless one already runs there; a
# private state dir: no autostart dir is read), then run the example attached:
# Ctrl+C stops its services. `make stop` ends the daemon.
# The shell catches Ctrl+C (a handler, not an ignore, so keplerctl still gets it) and
# lives on to say what is left, instead of dying with make's "*** Interrupt".
run: $(BIN)/.installed
	KEPLER_DAEMON_PATH=$(STATE) $(BIN)/keplerctl daemon status >/dev/null 2>&1 || \
		KEPLER_DAEMON_PATH=$(STATE) $(BIN)/keplerctl daemon start -d
	@trap : INT; KEPLER_DAEMON_PATH=$(STATE) $(BIN)/keplerctl -f $(EXAMPLE) start; code=$$?; \
		echo "keplerd is still running (state in $(STATE)): make stop ends it"; \
		[ $$code -eq 0 ] || [ $$code -eq 130 ]  # Ctrl+C (130) is how a run ends; other failures stay failures

stop: $(BIN)/.installed
	KEPLER_DAEMON_PATH=$(STATE) $(BIN)/keplerctl daemon stop

# Three workers on two cores: the integration tests spend about a third of their time waiting
# on their daemons (1,408 tests: 3 min 2 s with -n 2, 2 min 33 s with -n 3, idle machine).
test: $(BIN)/.installed test-tools
	$(BIN)/python -m pytest -q -n 3 tests

# Performance of the log path (as root): pump throughput against cat, --tail on 1 GiB against 1 MiB.
bench-logs: $(BIN)/.installed
	$(BIN)/python bench/logs.py

# keplerctl apply of one changed service in a 100-service config (as root): time and where it goes.
bench-apply: $(BIN)/.installed
	$(BIN)/python bench/apply.py

# The long attacks of issue #24 (as root, ~10 minutes): hostile frames and configs,
# kill -9 loops, 1,000 services, 50 followers, a full disk. Not part of `make test`.
soak: $(BIN)/.installed
	$(BIN)/python bench/soak.py

# groff lints the man pages; zsh runs the zsh completion script; systemd-analyze (and systemd
# itself, in test mode) checks and reads back the units of `keplerctl export`.
test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do \
		command -v $${tool%%:*} >/dev/null 2>&1 || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: $(BIN)/.installed
	$(BIN)/ruff check keplerd tests bench
	$(BIN)/lint-imports --no-cache setup.cfg

# The package and its dependencies go to LIBDIR (private to Kepler: no clash with
# the system's Python packages); BINDIR gets two small scripts that run them.
install: $(BIN)/.installed
	rm -rf build $(DESTDIR)$(LIBDIR)  # a stale build/ would bring back deleted modules
	$(BIN)/python -m pip install --quiet --no-compile --target $(DESTDIR)$(LIBDIR) .
	rm -rf $(DESTDIR)$(LIBDIR)/bin
	$(BIN)/python -m compileall -q -d $(LIBDIR) $(DESTDIR)$(LIBDIR) >/dev/null
	install -d $(DESTDIR)$(BINDIR)
	$(call launcher,keplerd,keplerd.daemon)
	$(call launcher,keplerctl,keplerd.cli.main)
	install -d -m 755 $(DESTDIR)$(SYSCONFDIR)/kepler $(DESTDIR)$(SYSCONFDIR)/kepler/conf.d
	test -e $(DESTDIR)$(SYSCONFDIR)/kepler/keplerd.conf || \
		install -m 644 etc/kepler/keplerd.conf $(DESTDIR)$(SYSCONFDIR)/kepler/keplerd.conf
	install -m 644 etc/kepler/conf.d/README $(DESTDIR)$(SYSCONFDIR)/kepler/conf.d/README
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/init.d
	sed 's|/usr/local/bin/|$(BINDIR)/|g' etc/systemd/keplerd.service > $(DESTDIR)$(UNITDIR)/keplerd.service
	sed 's|/usr/local/bin/keplerd|$(BINDIR)/keplerd|g' etc/init.d/keplerd > $(DESTDIR)$(SYSCONFDIR)/init.d/keplerd
	chmod 644 $(DESTDIR)$(UNITDIR)/keplerd.service
	chmod 755 $(DESTDIR)$(SYSCONFDIR)/init.d/keplerd
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 644 man/keplerctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/kepler.yaml.5 man/keplerd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 man/keplerd.8 $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	$(BIN)/keplerctl completion bash > $(DESTDIR)$(BASHCOMPDIR)/keplerctl
	$(BIN)/keplerctl completion zsh > $(DESTDIR)$(ZSHCOMPDIR)/_keplerctl
	if [ "$(CREATE_GROUP)" = yes ] && ! getent group $(GROUP) >/dev/null; then groupadd --system $(GROUP); fi
	install -d -m 770 $(DESTDIR)$(STATEDIR)
	if getent group $(GROUP) >/dev/null; then chown root:$(GROUP) $(DESTDIR)$(STATEDIR); fi
	@echo "installed; start it with: systemctl daemon-reload && systemctl enable --now keplerd"
	@echo "               (or, without systemd: update-rc.d keplerd defaults && service keplerd start)"

uninstall:
	rm -rf $(DESTDIR)$(LIBDIR)
	rm -f $(DESTDIR)$(BINDIR)/keplerd $(DESTDIR)$(BINDIR)/keplerctl
	rm -f $(DESTDIR)$(UNITDIR)/keplerd.service $(DESTDIR)$(SYSCONFDIR)/init.d/keplerd
	rm -f $(DESTDIR)$(MANDIR)/man1/keplerctl.1 $(DESTDIR)$(MANDIR)/man8/keplerd.8
	rm -f $(DESTDIR)$(MANDIR)/man5/kepler.yaml.5 $(DESTDIR)$(MANDIR)/man5/keplerd.conf.5
	rm -f $(DESTDIR)$(BASHCOMPDIR)/keplerctl $(DESTDIR)$(ZSHCOMPDIR)/_keplerctl
	rm -f $(DESTDIR)$(SYSCONFDIR)/kepler/conf.d/README
	@echo "kept: $(SYSCONFDIR)/kepler (settings and autostart configs), $(STATEDIR) and the $(GROUP) group"

# $(call launcher,NAME,MODULE): a script in BINDIR that runs MODULE's main() from LIBDIR,
# isolated (-I) from the caller's PYTHONPATH and user site-packages.
define launcher
	printf '%s\n' '#!$(INTERPRETER) -I' 'import sys' 'sys.path.insert(0, "$(LIBDIR)")' \
		'from $(2) import main' 'sys.exit(main())' > $(DESTDIR)$(BINDIR)/$(1)
	chmod 755 $(DESTDIR)$(BINDIR)/$(1)
endef

INTERPRETER = $(shell $(BIN)/python -c 'import os, sys; print(os.path.realpath(sys._base_executable))')

# The benchmark of issue #11: about 15 minutes on 2 cores (plus the peers' install,
# into bench/.scratch/, on first use). Writes bench/results/latest.{md,json} and the
# README's table. Not a test: `make test` never runs it. For iterating, see
# `$(BIN)/python bench/run.py --help` (--quick, --only kepler, --scenarios S1,S3).
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py --update-readme

clean:
	rm -rf $(VENV) $(STATE) build *.egg-info bench/.scratch
