# Two commands are the contract (README): `make report` runs the default workflow (the offline
# demo world) to results/report/index.html; `make test` runs the test suite. Both bootstrap the
# environment on a fresh machine first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: venv test test-fast report lint format rulegraph clean

# The environment is (re)built when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	# CHAIR's lemmatizer: Debian's WordNet, copied where nltk finds it (no download needed).
	if [ -d /usr/share/wordnet ]; then $(BIN)/python -m mllm.eval.nltk_data install-offline; fi
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q --durations=15

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

report: $(STAMP)
	@if [ -f Snakefile ]; then \
		$(BIN)/snakemake --cores $(CORES) report; \
	else \
		echo "not yet: the workflow (Snakefile) lands with the walking-skeleton issue"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The README's DAG picture: the rule graph of the default workflow, transitively reduced (tred)
# and drawn by graphviz. tests/test_docs.py fails when docs/rulegraph.dot is stale.
rulegraph: $(STAMP)
	$(BIN)/snakemake --rulegraph dot -- report > docs/rulegraph.dot
	tred docs/rulegraph.dot | dot -Tsvg -o docs/rulegraph.svg

clean:
	rm -rf results logs benchmarks .snakemake
