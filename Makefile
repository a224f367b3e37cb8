# sscmort: `make run` starts the app on the synthetic demo cohort, `make test` runs the tests.
# Both create .venv and install everything on a fresh clone, and do nothing slow when
# nothing changed (stamp files in .venv record what was installed).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STORE ?= data/sscmort.duckdb
PORT ?= 8501
# pyradiomics has no wheel for Python 3.11. 3.1.0's sdist lacks a C header (cmatrices.h) and
# does not build; 3.0.1's does, given numpy/versioneer/setuptools/wheel first and no isolation.
PYRADIOMICS := pyradiomics==3.0.1
BUILD_DEPS := pip setuptools wheel versioneer "numpy>=1.26,<2.5"

.PHONY: run test test-all bench install install-dev demo clean-venv browser pacs-tools

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-stamp: requirements.txt pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade $(BUILD_DEPS)
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-build-isolation "$(PYRADIOMICS)"
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev-stamp: requirements-dev.txt $(VENV)/.runtime-stamp
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

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

$(STORE): | $(VENV)/.runtime-stamp
	$(VENV)/bin/sscmort demo --store $(STORE)

demo: $(VENV)/.runtime-stamp
	$(VENV)/bin/sscmort demo --store $(STORE)

run: $(VENV)/.runtime-stamp $(STORE)
	SSCMORT_STORE=$(STORE) $(VENV)/bin/streamlit run app.py --server.port $(PORT)

test: install-dev
	$(PY) -m pytest -m "not slow"

test-all: install-dev
	$(PY) -m pytest

bench: $(VENV)/.runtime-stamp
	$(VENV)/bin/sscmort bench

clean-venv:
	rm -rf $(VENV)
