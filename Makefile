# Two commands set everything up on a fresh machine:
#   make demo   create .venv if missing, install jointopt, run the quickstart end to end
#   make test   same set-up with the dev extra, then run the tests
#   make bench / bench-quick   the benchmark suite (full, or reduced); see README "Benchmarks"
#   make bench-train           train the DeepPCB benchmark's models first (hours on 2 cores)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Keyed by pyproject.toml and this checkout's path: a venv shared by two clones (CI caches it
# by pyproject.toml) is re-pointed at the clone that runs, since `pip install -e` records a path.
HASH := $(shell (cat pyproject.toml; echo "$(CURDIR)") | sha256sum | cut -c1-12)
STUDY ?= studies/quickstart.yaml
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: demo test install install-dev install-bench lint bench bench-quick bench-precision bench-train clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-$(HASH): $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev-$(HASH): $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-$(HASH)

$(VENV)/.installed-bench-$(HASH): $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed-$(HASH)

install: $(VENV)/.installed-$(HASH)
install-dev: $(VENV)/.installed-dev-$(HASH)
install-bench: $(VENV)/.installed-bench-$(HASH)

OUT ?= runs/quickstart

demo: install
	$(BIN)/jointopt train $(STUDY)
	$(BIN)/jointopt search $(STUDY)
	$(BIN)/jointopt pareto $(STUDY)
	$(BIN)/jointopt report $(STUDY) --out $(OUT)/report.html
	$(BIN)/jointopt export $(STUDY) --out $(OUT)/export

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check jointopt tests
	$(BIN)/mypy jointopt

# Raw records go to benchmarks/results/bench_*.jsonl; RESULTS.md and its figures are then
# regenerated from all records (also when a section failed; the exit status still says so).
bench: install install-bench
	$(BIN)/python benchmarks/precision.py --rounds 5; p=$$?; \
	$(BIN)/python benchmarks/run_bench.py --full $(BENCH_ARGS); rc=$$?; \
	$(BIN)/python benchmarks/make_results.py && exit $$(( rc || p ))

# The quick precision section: one round, the largest architecture, r = 0 and 8, no agreement.
QUICK_PRECISION_ARGS := --rounds 1 --runs 15 --archs largest --merges 0,8 --skip-agreement
bench-quick: install install-bench
	$(BIN)/python benchmarks/precision.py $(QUICK_PRECISION_ARGS); p=$$?; \
	$(BIN)/python benchmarks/run_bench.py --quick $(BENCH_ARGS); rc=$$?; \
	$(BIN)/python benchmarks/make_results.py && exit $$(( rc || p ))

# Only the precision and runtime section (benchmarks/precision.py), then RESULTS.md.
bench-precision: install install-bench
	$(BIN)/python benchmarks/precision.py $(BENCH_ARGS); rc=$$?; \
	$(BIN)/python benchmarks/make_results.py && exit $$rc

# Trains what the DeepPCB benchmark needs (supernet, resnet10t, DeiT-Tiny shape, teacher arms,
# fidelity configs; benchmarks/bench_train.py), resumable and cached by a hash of the training
# code, recipe and space; on a GPU when there is one (the study's train.device: auto).
# One job per core without a GPU (one thread each); BENCH_TRAIN_ARGS="--jobs 8 --deadline 3000"
# sets the jobs at once and stops in time.
BENCH_TRAIN_STUDY ?= studies/deeppcb.yaml
BENCH_TRAIN_ARGS ?=
bench-train: install install-bench
	$(BIN)/python benchmarks/bench_train.py $(BENCH_TRAIN_STUDY) $(BENCH_TRAIN_ARGS)

clean:
	rm -rf runs build *.egg-info
