# Two commands a newcomer needs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
DEMO_DIR ?= demo-workspace

.PHONY: install demo test lint clean-demo

# CPU torch unless a GPU driver is present: an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q 'torch>=2.5'; \
	else $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

lint: install
	$(BIN)/lint-imports

demo: install
	$(BIN)/dialsum-tui demo $(DEMO_DIR)

clean-demo:
	-$(BIN)/dialsum-tui --workspace $(DEMO_DIR) worker stop
	rm -rf $(DEMO_DIR)
