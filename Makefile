# tpe-sim — two commands: `make demo` and `make test`. Needs python3 >= 3.11, pip and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit test-realistic bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tpe-sim needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## pay an invoice through the virtual terminal, end to end
	$(BIN)/tpe-sim demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)  ## the test suite; JUnit XML and Cucumber JSON reports for CI under reports/
	mkdir -p reports && $(BIN)/pytest -n auto --junitxml=reports/junit.xml --cucumberjson=reports/cucumber.json

test: lint typecheck unit  ## lint, type check and the whole test suite

#: the contactless payment feature over RootCanal, on the wall clock
REALISTIC_SCENARIOS := sans_contact or la_banque_refuse_la_carte
test-realistic: $(STAMP)  ## processes, RootCanal, Bumble's own tools, wall clock (a few minutes)
	mkdir -p reports
	$(BIN)/pytest -m realistic -n 2 --junitxml=reports/junit-realistic.xml
	$(BIN)/pytest -n 2 tests/features/test_paiement.py -k '$(REALISTIC_SCENARIOS)' \
	  --tpe-link rootcanal --tpe-realtime --tpe-preconfigured --tpe-snoop reports/captures \
	  --junitxml=reports/junit-realistic-features.xml

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]' && touch $(BENCH_STAMP) \
	  || echo "bench extra (rootcanal) not installed: the RootCanal lane will say unavailable"

bench: $(BENCH_STAMP)  ## speed and scale: a table on stdout, reports/bench.json (docs/performance.md)
	mkdir -p reports && $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache reports *.egg-info
