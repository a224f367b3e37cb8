# sscmort: `make run` starts the app on the synthetic demo cohort (built in the background on
# first start), `make test` runs the tests.
# Both create .venv and install everything on a fresh clone, and do nothing slow when
# nothing changed (stamp files in .venv record what was installed). They install the lock files
# (exact versions and hashes, `pip install --require-hashes`), never requirements*.txt directly;
# `make lock` regenerates the locks from requirements*.txt, and nothing else does.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STORE ?= data/sscmort.duckdb
PORT ?= 8501
# pyradiomics has no wheel for Python 3.11. 3.1.0's sdist lacks a C header (cmatrices.h) and
# does not build; 3.0.1's does, given numpy/versioneer/setuptools/wheel first and no isolation.
# Its dependencies and those build tools are in requirements.txt (so in requirements.lock); the
# sdist itself is pinned and hashed in requirements-pyradiomics.lock, installed with --no-deps.
PYRADIOMICS := pyradiomics==3.0.1
# The locks are for the platform `make` installs on: Linux x86_64, CPython 3.11.
UV ?= $(VENV)/bin/uv
LOCK_FLAGS := --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu

.PHONY: run test test-all bench bench-app install install-dev demo clean-venv browser pacs-tools lock

$(PY):
	$(PYTHON) -m venv $(VENV)

# Two of the locked packages (docopt, autograd-gamma) are sdists: they build with the venv's
# setuptools and wheel, installed first from requirements-build.lock (hashed, the same pins as
# requirements.lock), never with build tools pip would fetch unchecked into an isolated build.
$(VENV)/.runtime-stamp: requirements.lock requirements-build.lock requirements-pyradiomics.lock \
    pyproject.toml | $(PY)
	$(PIP) install --quiet --require-hashes -r requirements-build.lock
	$(PIP) install --quiet --require-hashes --no-build-isolation -r requirements.lock
	$(PIP) install --quiet --require-hashes --no-deps --no-build-isolation \
	  -r requirements-pyradiomics.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

# requirements-dev.lock holds requirements.lock's pins plus the test tools: one install of it
# gives the whole test environment.
$(VENV)/.dev-stamp: requirements-dev.lock $(VENV)/.runtime-stamp
	$(PIP) install --quiet --require-hashes --no-build-isolation -r requirements-dev.lock
	touch $@

# Deliberate refresh (new requirement, security fix, monthly): re-resolves requirements*.txt,
# keeping the current pins where they still satisfy them (uv reads the existing output file;
# `make lock UPGRADE=--upgrade` takes the newest releases instead; UV=PATH uses another uv
# than .venv's). The dev lock is compiled
# with the runtime lock as a constraint, so the two never disagree. Run `make test` after.
lock: $(if $(filter $(VENV)/bin/uv,$(UV)),$(VENV)/.dev-stamp)
	$(UV) pip compile $(LOCK_FLAGS) $(UPGRADE) requirements.txt -o requirements.lock
	$(UV) pip compile $(LOCK_FLAGS) $(UPGRADE) requirements.txt requirements-dev.txt \
	  -c requirements.lock -o requirements-dev.lock
	echo "$(PYRADIOMICS)" | $(UV) pip compile $(LOCK_FLAGS) --no-deps - \
	  -o requirements-pyradiomics.lock
	printf 'setuptools\nwheel\n' | $(UV) pip compile $(LOCK_FLAGS) -c requirements.lock - \
	  -o requirements-build.lock

install: $(VENV)/.runtime-stamp

install-dev: $(VENV)/.dev-stamp browser pacs-tools

# Debian's chromium for the real-browser test (Playwright's own download does not work here).
# Best effort: without it the browser test skips and says why.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed; the browser test will skip"; \
	  else echo "chromium missing and apt-get unavailable; the browser test will skip"; fi; \
	fi

# Debian's Orthanc with its DICOMweb plugin (a real PACS for the PACS tests) and GDCM's gdcmconv
# (the JPEG lossless encoder of the compressed-DICOM test). Best effort, as for chromium:
# without them those tests skip and say why.
PACS_DEBS := orthanc orthanc-dicomweb libgdcm-tools
pacs-tools:
	@if [ ! -x /usr/sbin/Orthanc ] || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] \
	    || ! command -v gdcmconv >/dev/null; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(PACS_DEBS) >/dev/null) \
	      || echo "$(PACS_DEBS) could not be installed; the PACS tests will skip"; \
	  else echo "Orthanc, its DICOMweb plugin or gdcmconv missing and apt-get unavailable; the PACS tests will skip"; fi; \
	fi

demo: $(VENV)/.runtime-stamp
	$(VENV)/bin/sscmort demo --store $(STORE)

# `sscmort app`: localhost without login; any other address only with login configured
# (.streamlit/secrets.toml, see .streamlit/secrets.toml.example). ADDRESS=0.0.0.0 to serve.
# It serves at once: with no store (or a demo store whose build was interrupted) the app builds
# the synthetic demo as a background job, with a progress panel on every page (issue 13).
ADDRESS ?= localhost
run: $(VENV)/.runtime-stamp
	$(VENV)/bin/sscmort app --store $(STORE) --address $(ADDRESS) --port $(PORT)

test: install-dev
	$(PY) -m pytest -m "not slow"

test-all: install-dev
	$(PY) -m pytest

bench: $(VENV)/.runtime-stamp
	$(VENV)/bin/sscmort bench

# Load benchmark of the app: N = 1, 4, 8 headless Chromium sessions through every page, one
# uploading the real CT (../shared/data/real_ct); per page p50/p95 settle and server time.
bench-app: install-dev
	$(PY) tests/bench/bench_app.py --sessions 1 4 8

clean-venv:
	rm -rf $(VENV)
