PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv lint format demo test test-slow bench bench-population reproduce clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/pplevelset sample houses --target ambiguous --kernel ensemble --particles 300 --warmup 200 --steps 200 \
		--out runs/demo --overwrite
	@echo "look at runs/demo/samples.png"

lint: venv
	$(BIN)/ruff check pplevelset tests benchmarks
	$(BIN)/ruff format --check pplevelset tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix pplevelset tests benchmarks
	$(BIN)/ruff format pplevelset tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

test-slow: venv
	$(BIN)/python -m pytest -q -m slow

bench: venv
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/sweep.py

bench-population: venv
	$(BIN)/python benchmarks/population.py

reproduce: venv
	$(BIN)/pplevelset reproduce all

clean:
	rm -rf runs .pytest_cache
