# One command each, on a fresh machine: `make run` serves the demo, `make test` runs the suite.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test bench install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/hlrsmpp serve --config conf/hlrsmpp.yaml

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/hlrsmpp bench --spawn --sessions 4 --window 64 --count 200000

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
