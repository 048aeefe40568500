# Quick start targets: each creates .venv (CPU torch pinned, see README) when it is missing.
PY := .venv/bin/python
PYTEST_WORKERS ?= 2

.PHONY: venv train test bench clean

$(PY):
	python3 -m venv .venv
	.venv/bin/pip install --upgrade -q pip
	.venv/bin/pip install "torch==2.13.0" -e ".[dev]"

venv: $(PY)

# The main job: train the default score model (see conf/config.yaml), sample it and evaluate it.
train: $(PY)
	$(PY) -m scoresde.train $(ARGS)

# The whole test suite, notebooks included, on $(PYTEST_WORKERS) processes.
test: $(PY)
	WANDB_MODE=disabled WANDB_SILENT=true $(PY) -m pytest -n $(PYTEST_WORKERS) -q $(ARGS)

bench: $(PY)
	$(PY) benchmarks/samplers.py && $(PY) benchmarks/likelihood.py && $(PY) benchmarks/training.py

clean:
	rm -rf outputs multirun wandb .pytest_cache
