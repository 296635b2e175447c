# `make demo` and `make test` do all set-up on a fresh machine.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)

.PHONY: install demo test browser bench wheel clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and alone: the CPU wheel on local disk; any other spec pulls a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,export,ray,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/edgead demo

test: install
	$(BIN)/python -m pytest -q

# Headless Chromium for tests/test_report.py (renders the eval report as a person sees it).
# Debian only, as root; elsewhere that test is skipped.
browser:
	@if command -v chromium >/dev/null; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "browser: not root, skipping the Chromium install (tests/test_report.py skips its browser check)"; fi

# dist/edgead-<version>-py3-none-any.whl: what a device installs (README "Install on the device").
wheel: install
	rm -rf build dist/edgead-*.whl
	$(BIN)/python -m pip wheel -q --no-deps -w dist .

bench: install
	$(BIN)/python bench/run_image_bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info
