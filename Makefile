# DefocusBench: `make demo` (install + main job on built-in images), `make test` (install + tests).
# The main job: build the demo corpus, then benchmark every method on built-in data (quick
# profile, including the demo corpus's test split) and write the HTML report.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	@# environments made before we depended on opencv-python-headless alone hold opencv-python too: both
	@# write cv2/, so removing one breaks the other; drop it and restore the headless files
	if $(BIN)/python -m pip show --quiet opencv-python 2>/dev/null; then \
	  $(BIN)/python -m pip uninstall --quiet -y opencv-python && \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps opencv-python-headless; fi
	$(BIN)/python -c "import datagen, torch, torchvision, h5py, distributed, pyiqa" 2>/dev/null || \
	  (echo "install failed: see the pip output above" >&2; exit 1)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/datagen build manifests/demo_gauss20.yaml --out corpora/demo_gauss20.h5
	$(BIN)/datagen info corpora/demo_gauss20.h5
	$(BIN)/datagen preview corpora/demo_gauss20.h5 --out reports/demo/demo_gauss20_preview.png
	$(BIN)/bench run --methods all --profile quick --root gauss20=corpora/demo_gauss20.h5 --out reports/demo/run
	@echo "report: $(abspath reports/demo/run/report.html)"

test: $(STAMP)
	scripts/ensure_chromium.sh || echo "warning: Chromium could not be installed; the browser tests will be skipped" >&2
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf corpora reports/demo .pytest_cache
