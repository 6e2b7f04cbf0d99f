# velm-edge developer and user entry points.  Everything installs into ./.venv from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= models/velm-default.keras

.PHONY: setup demo test lint bench clean

$(BIN)/velm-convert: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[convert,dev]"
	@touch $@

setup: $(BIN)/velm-convert  ## create .venv with the converter, runtime and test tools

demo: setup  ## caption 3 s of the animated synthetic camera with the default model (float Keras reference)
	$(BIN)/velm-convert caption $(MODEL) --synth 45 --animated --seed 1

test: lint  ## lint, then the test suite (what CI runs)
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check velm_edge convert tests benchmarks examples

bench: setup  ## train the default model for 20 minutes and score it on 500 held-out scenes
	$(BIN)/python benchmarks/train_default.py --out runs/bench

clean:
	rm -rf runs build dist *.egg-info .pytest_cache
