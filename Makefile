# One command each, on a fresh machine: `make run` serves the demo, `make test` runs the suite.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test bench bench-redis install clean deps

$(STAMP): pyproject.toml constraints.txt setup.py hlrsmpp/smpp/_speedups.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q pip==26.3
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/hlrsmpp serve --config conf/hlrsmpp.yaml

# The shared-deployment tests start a real redis-server (never a fake, never the system
# service): install the Debian package when it is missing (as root; otherwise say how).
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
	  else \
	    echo "make: redis-server is missing: run as root, or: sudo apt-get install redis-server" >&2; exit 1; \
	  fi; }

test: $(STAMP) deps
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/hlrsmpp bench --spawn --sessions 4 --window 64 --count 200000

# 1 process against 2 on Redis (serve --workers N), 100,000 lookups each, audited.
bench-redis: $(STAMP) deps
	$(BIN)/python -m hlrsmpp.redis.bench --workers 1,2 --count 100000

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
