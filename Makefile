# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
SYNTHMED_DATA ?= $(HOME)/.medmnist
export SYNTHMED_DATA
DEMO_OUT ?= runs/demo

.PHONY: demo test quick-test lint format bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# BreastMNIST (downloaded to ~/.medmnist if missing, 560 KB): none vs flips vs 150 cVAE images per class, 3 seeds,
# a short schedule, about 5 minutes on 2 CPU cores; writes $(DEMO_OUT)/report.html (with the cVAE's image grid).
demo: $(VENV)/.installed
	$(VENV)/bin/synthmed run --config configs/demo.yaml --out $(DEMO_OUT)

# Lint, then the whole suite (tests that need the MedMNIST files are skipped when $$SYNTHMED_DATA lacks them).
test: lint
	$(VENV)/bin/python -m pytest -q --durations=10

# The tests that need no data file and train nothing for long: under a minute, for quick iteration.
quick-test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix src tests bench scripts
	$(VENV)/bin/ruff format src tests bench scripts

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
