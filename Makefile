# `make demo` and `make test` are the two set-up commands of the README:
# each creates .venv if needed (plain Python is all it takes), installs the
# package, then runs the main job or the whole test suite.
PYTHON ?= python3
# Test processes (pytest-xdist); each file's tests run in one of them.
TEST_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/segattn: requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	# The TF Serving client protos, for the serving tests: the wheel asks for
	# the full `tensorflow` distribution, and only its protos are needed.
	$(BIN)/pip install -q --no-deps "tensorflow-serving-api>=2.16"
	# setup.py asks for `tensorflow`; requirements.txt brought tensorflow-cpu.
	$(BIN)/pip install -q --no-deps -e .
	touch $@

.PHONY: demo test lint benchmark docs
demo: $(BIN)/segattn
	$(BIN)/segattn demo

test: $(BIN)/segattn
	$(BIN)/ruff check keras_segattn tests benchmarks
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests

lint: $(BIN)/segattn
	$(BIN)/ruff check keras_segattn tests benchmarks
	$(BIN)/ruff format --check keras_segattn tests benchmarks

benchmark: $(BIN)/segattn
	$(BIN)/python benchmarks/run.py

# The documentation site (mkdocs.yml) into site/; strict: a warning (a broken
# link, a page left out of the nav, an API path that does not resolve) fails.
docs: $(BIN)/segattn
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
