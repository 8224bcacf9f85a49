# Quick start: `make demo` (the whole pipeline on the procedural toy world) and `make test`.
# Both create the virtual environment in .venv when it is missing, and reuse it otherwise.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test env bench clean-demo

env: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tools.demo

# Two workers (pytest-xdist), a test file each at a time; pytest exits 5 when it collects no test:
# that is a failure too.
test: $(STAMP)
	@$(PY) -m pytest -q -n 2 --dist loadfile tests; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

bench: $(STAMP)
	$(PY) -m bench.salad_aggregation
