# Convenience targets; each is the same command the README shows.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv run test lint fmt clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)

venv: $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[all,test]'

run: $(VENV)/bin/python  ## install (embedded SQLite) and run tenantry
	$(PY) -m pip install -q -e .
	$(VENV)/bin/tenantry init
	$(VENV)/bin/tenantry db status

test: venv  ## the whole suite on SQLite, PostgreSQL and MariaDB
	$(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench/*.py

fmt: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf .tenantry .pytest_cache .mypy_cache .ruff_cache
