# One command each, on a fresh machine: `make run` serves the demo, `make test` runs the suite.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test test-fast lint bench bench-sms bench-redis install clean deps build-deps asan

$(STAMP): pyproject.toml constraints.txt setup.py hlrsmpp/smpp/_speedups.c hlrsmpp/accounts/_sqlite_batch.c \
          hlrsmpp/hlr/_resolve.c
	@$(MAKE) --no-print-directory build-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q pip==26.3
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/hlrsmpp serve --config conf/hlrsmpp.yaml

# The C modules need gcc and SQLite's headers: installed when missing (as root); else the
# install goes on and the server runs their Python reference (the tests then say so).
build-deps:
	@{ command -v gcc >/dev/null 2>&1 && [ -f /usr/include/sqlite3.h ]; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y gcc libsqlite3-dev; \
	  else \
	    echo "make: gcc or libsqlite3-dev is missing: the C modules will not be built (sudo apt-get install gcc libsqlite3-dev)" >&2; \
	  fi; }

# Programs the tests start, never fakes: redis-server and PostgreSQL (shared deployments;
# Debian's postgresql: initdb and pg_ctl under /usr/lib/postgresql/*/bin), Kannel's
# bearerbox and smsbox (the interop matrix; its upstream version pinned), haproxy (the
# PROXY protocol in front of the SMPP port; openssl makes the tests' certificates), and
# Debian's chromium and its chromium-driver (the console's browser tests; Debian's security
# updates move them, so not pinned: 156.0.8078.114-1~deb12u1 when written), installed with
# apt-get when missing (as root; otherwise say how); the npm smpp client from its lockfile.
KANNEL_DEB  := kannel=1.4.5*
NODE_CLIENT := tests/interop/node

deps: $(NODE_CLIENT)/node_modules/.package-lock.json
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	{ command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null 2>&1 || missing="$$missing haproxy"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	{ command -v bearerbox || [ -x /usr/sbin/bearerbox ]; } >/dev/null 2>&1 || missing="$$missing $(KANNEL_DEB)"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	[ -z "$$missing" ] || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	  else \
	    echo "make: missing for the tests:$$missing: run as root, or: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; }

# npm ci installs exactly the lockfile (node_modules is not in git); --prefer-offline
# takes the npm cache when it has the packages.
$(NODE_CLIENT)/node_modules/.package-lock.json: $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --prefer-offline

# Every test (markers in tests/conftest.py), then the end-to-end tests of the SMPP codec, the
# group commit and the resolver again on their Python reference (HLRSMPP_PURE_PYTHON=1: the
# server processes the tests start inherit it).
PURE_TESTS := tests/test_e2e_smpplib.py tests/test_e2e_accounts.py tests/test_faults.py tests/test_hlr.py \
              tests/test_store.py tests/test_speedups.py::test_the_c_codec_is_built_unless_turned_off
test: $(STAMP) deps lint
	$(BIN)/pytest
	HLRSMPP_PURE_PYTHON=1 $(BIN)/pytest -m "not slow" $(PURE_TESTS)

# The layers as import contracts (pyproject.toml: smpp and hlr import no accounts, storage or
# server; redis imports no server; no cycles between the packages), pyflakes, pycodestyle and
# bugbear over the code and the tests, strict types on the protocol, the number intelligence,
# the shared nouns and the storage seam (docs/architecture.md).
lint: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check --no-cache .
	$(BIN)/mypy

# The inner loop, under a minute: the unit tests and a few quick end-to-end ones.
FAST_E2E := tests/test_e2e_smpplib.py tests/test_http_api.py
test-fast: $(STAMP)
	$(BIN)/pytest -m "unit and not slow"
	$(BIN)/pytest -m "not slow" $(FAST_E2E)

bench: $(STAMP)
	$(BIN)/hlrsmpp bench --spawn --sessions 4 --window 64 --count 200000

# The same load as text messages (1-part SMS from an SMS account, docs/sms.md).
bench-sms: $(STAMP)
	$(BIN)/hlrsmpp bench --spawn --sessions 4 --window 64 --count 200000 --sms

# 1 process against 2 on Redis (serve --workers N), 100,000 lookups each, audited.
bench-redis: $(STAMP) deps
	$(BIN)/python -m hlrsmpp.bench.redis --workers 1,2 --count 100000

# The C modules built with AddressSanitizer and UBSan, under the tests that feed them
# untrusted bytes and random commits (hypothesis), and servers (their processes inherit
# the preload) taking 100,000 lookups through the committer thread. Needs gcc's runtimes and libsqlite3-dev.
ASAN_DIR := build/asan
ASAN_CC  := gcc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
            -fPIC -shared -I"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
EXT      := $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
asan: $(STAMP)
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR) && cp -r hlrsmpp tests conf pyproject.toml $(ASAN_DIR)/
	$(ASAN_CC) hlrsmpp/smpp/_speedups.c -o $(ASAN_DIR)/hlrsmpp/smpp/_speedups$(EXT)
	$(ASAN_CC) hlrsmpp/accounts/_sqlite_batch.c -lsqlite3 -o $(ASAN_DIR)/hlrsmpp/accounts/_sqlite_batch$(EXT)
	$(ASAN_CC) hlrsmpp/hlr/_resolve.c -o $(ASAN_DIR)/hlrsmpp/hlr/_resolve$(EXT)
	cd $(ASAN_DIR) && export PYTHONPATH=$(CURDIR)/$(ASAN_DIR) ASAN_OPTIONS=detect_leaks=0,verify_asan_link_order=0 \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  && $(CURDIR)/$(BIN)/python -c "import sys, hlrsmpp.smpp.codec, hlrsmpp.accounts.store, hlrsmpp.hlr.resolver; \
	       sys.exit(any('$(ASAN_DIR)' not in getattr(sys.modules.get(m), '__file__', '') \
	                    for m in ('hlrsmpp.smpp._speedups', 'hlrsmpp.accounts._sqlite_batch', 'hlrsmpp.hlr._resolve')))" \
	  && $(CURDIR)/$(BIN)/python -m pytest -p no:cacheprovider tests/test_speedups.py tests/test_session.py \
	  tests/test_codec.py tests/test_receipts.py tests/test_store.py tests/test_journal.py \
	  tests/test_exactness.py tests/test_hlr.py -k "not real_esme"

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis .mypy_cache
