# Two commands a newcomer needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
DEMO_DIR ?= demo-workspace
TORCH_VERSION ?= 2.13.0
# Used only where no local CPU wheel of torch is found (pip's find-links / configured indexes).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install browser demo demo-build test lint clean-demo

# CPU torch unless a GPU driver is present: an unpinned torch on PyPI is a multi-GB CUDA build.
# The +cpu build is tried from what pip already sees first, then from PyTorch's CPU index.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q 'torch==$(TORCH_VERSION)'; \
	elif $(PY) -c 'import torch' 2>/dev/null; then echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else $(PY) -m pip install -q 'torch==$(TORCH_VERSION)+cpu' \
	  || $(PY) -m pip install -q 'torch==$(TORCH_VERSION)' --index-url $(TORCH_CPU_INDEX); fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# tests/tui/test_serve.py opens `dialsum-tui serve` in headless Chromium (driven by the playwright
# package, which cannot download a browser here): Debian's package, added where apt-get can run as
# root (CI, a fresh dev box). Elsewhere the test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	|| if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
	  || echo "WARNING: could not install chromium: the browser test will skip"; \
	else echo "no chromium: the browser test will skip (Debian/Ubuntu: sudo apt-get install chromium)"; fi

# Two workers, one test file each at a time (module fixtures such as trained tiny models stay in one
# process): the suite is mostly subprocesses waiting on each other, so CI's 2 cores halve its time.
TEST_WORKERS ?= 2
test: install browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff check engine dialsum_tui benchmarks tests
	$(BIN)/lint-imports

# Builds the demo workspace (reused if present), queues its pipelines once, starts the worker, opens the TUI.
demo: install
	$(BIN)/dialsum-tui demo $(DEMO_DIR)

# The same without queueing or the TUI (scripts, screenshots).
demo-build: install
	$(BIN)/dialsum-tui init $(DEMO_DIR) --demo

clean-demo:
	-test -d $(DEMO_DIR)/.dialsum && $(BIN)/dialsum-tui --workspace $(DEMO_DIR) worker stop
	rm -rf $(DEMO_DIR)
