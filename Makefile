# flowpivot: `make demo` runs the main job on built-in data, `make test` runs the test suite.
# Both create .venv in the repo root; as root they also install the Debian tools the tests use.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SHARED  ?= ../shared/data

.PHONY: demo test check lint bench deps venv clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages for the real-tool tests (only when root and something is missing).
deps:
	@missing=""; \
	for c in nfdump:nfdump nfcapd:nfdump softflowd:softflowd tshark:tshark chromium:chromium pmacctd:pmacct ra:argus-client argus:argus-server java:default-jre-headless; do \
	  cmd=$${c%%:*}; pkg=$${c##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing tools:$$missing (run as root, or install them)"; fi; \
	fi

demo: $(STAMP)
	$(BIN)/flowpivot demo --out demo-out

test: $(STAMP) deps
	FLOWPIVOT_SHARED=$(SHARED) $(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff check flowpivot tests bench
	$(BIN)/ruff format --check flowpivot tests bench
	$(BIN)/mypy flowpivot

bench: $(STAMP) deps
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) demo-out .pytest_cache
