# The two commands of the README:
#   make preview   set up .venv and preview (and policy-check) the reference stacks, offline
#                  (production also as the first preview of a new stack sees it)
#   make test      set up .venv, lint and format-check (ruff), run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: preview test bench clean bytecode

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,vertex,gke,loadtest,enforcer]'
	touch $(STAMP)

# Byte-compile the project as pip does an installed package (an editable install is not, and
# with PYTHONDONTWRITEBYTECODE set every command would compile it again); only changed files
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 agentstage components policies >/dev/null

preview: bytecode
	$(BIN)/agentstage preview staging
	$(BIN)/agentstage preview production
	$(BIN)/agentstage check staging
	$(BIN)/agentstage check production
	$(BIN)/agentstage check production --new-stack

test: bytecode
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2

bench: bytecode
	$(BIN)/python bench/preview.py
	$(BIN)/python bench/check.py
	$(BIN)/python bench/release.py
	$(BIN)/python bench/canary.py
	$(BIN)/python bench/loadtest.py
	$(BIN)/python bench/enforcer.py
	$(BIN)/python bench/incident.py

clean:
	rm -rf $(VENV) build *.egg-info
