# One command to run, one to test. Each installs everything it needs into .venv first.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: run demo test lint bench clean

# setup.py compiles these (mypyc): editing one builds them again.
COMPILED := $(shell sed -n 's/^COMPILED = \[\(.*\)\]/\1/p' setup.py | tr -d '",')

$(STAMP): pyproject.toml setup.py $(COMPILED)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)  ## Run the service on the embedded default (SQLite + local media in ./callrec-data)
	$(VENV)/bin/callrec serve $(ARGS)

demo: $(STAMP)  ## Run the service with a seeded demo contact center
	$(VENV)/bin/callrec serve --demo $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

test: lint  ## Format, lint, type and test: everything CI runs
	$(VENV)/bin/pytest $(ARGS)

bench: $(STAMP)  ## Benchmarks (see bench/README.md)
	$(VENV)/bin/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/callrec/*.so
