# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
SYNTHMED_DATA ?= $(HOME)/.medmnist
export SYNTHMED_DATA
DEMO_OUT ?= runs/demo

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# BreastMNIST (downloaded to ~/.medmnist if missing, 560 KB), none vs flips, 3 seeds, a short schedule:
# about 5 minutes on 2 CPU cores; writes $(DEMO_OUT)/report.html and report.md.
demo: $(VENV)/.installed
	$(VENV)/bin/synthmed run --config configs/demo.yaml --out $(DEMO_OUT)

test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/python -m pytest -q --durations=10

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
