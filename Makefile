# netmargin: `make demo` runs the main job, `make test` the whole suite.
# Both build the environment first: a Python 3.11 venv from requirements.lock and the
# pinned Anvil from npm, both inside the project (nothing global, nothing downloaded at run time).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
ANVIL_BIN := node_modules/@foundry-rs/anvil-linux-amd64/bin
# ape-vyper downloads a compiler unless the venv's vyper is on PATH; ape-foundry finds anvil on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/$(ANVIL_BIN):$(PATH)

.PHONY: install compile test test-quick demo devnet lint bench test-long lock clean clean-anvil chromium

WEB_STATIC := offchain/api/static/index.html

install: $(VENV)/.installed $(ANVIL_BIN)/anvil $(WEB_STATIC) chromium

# progress: one line per package pip collects (a first install takes several minutes)
$(VENV)/.installed: requirements.lock pyproject.toml
	@echo "== installing the Python environment into $(VENV)/ (first time: several minutes) ..."
	$(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(VENV)/bin/pip install --progress-bar off -r requirements.lock \
		| { grep --line-buffered -E '^(Collecting|Successfully installed)' || true; } \
		| sed -u -e 's/^Collecting /   /' -e 's/^Successfully installed.*/   done/'
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(ANVIL_BIN)/anvil: package.json package-lock.json
	@echo "== installing the pinned Anvil from npm into node_modules/ ..."
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# the web app: pinned npm packages (web/package-lock.json) built into offchain/api/static,
# which the API serves; nothing is fetched from a CDN at run time
web/node_modules/.installed: web/package.json web/package-lock.json
	@echo "== installing the web app's pinned npm packages into web/node_modules/ ..."
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_STATIC): web/node_modules/.installed web/vite.config.js web/index.html $(wildcard web/src/*.js web/src/*/*.js web/src/*.css)
	@echo "== building the web app into offchain/api/static/ ..."
	cd web && npm run build --silent

# Debian's chromium for the browser tests (Playwright drives /usr/bin/chromium and never
# downloads a browser of its own); installed only when missing
chromium:
	@test -x /usr/bin/chromium || { echo "== installing Debian's chromium ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# ape-vyper's incremental compile rebuilds an edited module (engine_core.vy) but not the
# contracts that import it, so the suite would test stale bytecode: always rebuild (~20 s).
compile: install
	ape compile --force -v WARNING

# the whole tree on one pytest worker per core (pytest-xdist), each with its own Anvil; a file's
# tests stay on one worker, in order, so its module fixtures and ape's snapshots hold
# (TEST_WORKERS=0: one process; tests/conftest.py refuses fixture names that would make ape's
# isolation re-create a session fixture mid-module)
TEST_WORKERS ?= auto
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadfile

test: install lint compile
	@$(MAKE) --no-print-directory clean-anvil
	pytest -q $(PYTEST_PARALLEL); rc=$$?; $(MAKE) --no-print-directory clean-anvil; exit $$rc

# Anvil writes each chain's older states to a folder under ~/.foundry/anvil/tmp (up to ~1 GB for
# the suite's long chains) and leaves it behind when stopped: a test run left ~2 GB. They are
# removed only while no anvil runs on this machine, so no folder in use is touched.
clean-anvil:
	@if grep -qsx anvil /proc/[0-9]*/comm; then echo "clean-anvil: an anvil is running; its state folders are kept"; \
	else rm -rf $$HOME/.foundry/anvil/tmp/anvil-state-*; fi

lint: install
	ruff check .
	@vyper --version | grep -q '^0.4.3' || { echo "vyper must be 0.4.3, got $$(vyper --version)"; exit 1; }

# a persistent local chain with everything on it, until Ctrl-C (options: make devnet ARGS="--prices live")
devnet: install
	netmargin devnet $(ARGS)

demo: install
	@echo "== running the demo (about a minute: two replays on a local chain) ..."
	netmargin demo

bench: install compile
	for b in benchmarks/bench_*.py; do echo "== $$b"; python $$b || exit 1; done

# the depth `make test` leaves out (hours): the same tree with every hypothesis test at its long
# count, the stateful machines thousands of times with shrinking, the pricer's 10,000-input sweep
# (tests/support/fuzz.py; STATEFUL_EXAMPLES=N caps the machines' runs)
test-long: install lint compile
	HYPOTHESIS_PROFILE=long pytest -q $(PYTEST_PARALLEL)

lock:
	$(VENV)/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) node_modules .build
