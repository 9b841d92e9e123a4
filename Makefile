# Two commands set everything up on a fresh Debian/Ubuntu machine with Python 3.11:
#   make repro   install, then `dvc repro` on the embedded default corpus
#   make test    install, then run the test suite
#   make lint    install, then ruff (the settings in pyproject.toml)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Debian packages the embedded text-to-speech corpus needs (festival and its festvox voices:
# pipeline/corpus/tts.py, FESTIVAL_VOICES; a test checks the two lists agree), and the real
# recordings the realcheck stage mixes (pocketsphinx-testdata and asterisk's telephone prompts:
# realcheck.sets).
FESTIVAL_PACKAGES := festival festvox-kdlpc16k festvox-czech-dita festvox-czech-machac \
	festvox-czech-ph festvox-czech-krb festvox-suopuhe-lj festvox-suopuhe-mv \
	festvox-italp16k festvox-itapc16k festvox-ca-ona-hts
REAL_SPEECH_PACKAGES := pocketsphinx-testdata asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav \
	asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav
APT_PACKAGES := flite espeak-ng fortunes fortunes-min $(REAL_SPEECH_PACKAGES) $(FESTIVAL_PACKAGES)
SMOKE_DIR ?=
PYTEST_ARGS ?=

.PHONY: repro test lint smoke bench install system-deps clean-venv

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

system-deps:
	@missing=""; \
	command -v flite >/dev/null || missing="$$missing flite"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	for p in $(FESTIVAL_PACKAGES) $(REAL_SPEECH_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	[ -f /usr/share/games/fortunes/fortunes ] || missing="$$missing fortunes"; \
	[ -f /usr/share/games/fortunes/literature ] || [ -f /usr/share/games/fortunes/wisdom ] || missing="$$missing fortunes-min"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "error: missing system packages:$$missing; run: sudo apt-get install -y $(APT_PACKAGES)" >&2; exit 1; \
	  fi; \
	fi

repro: system-deps install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

test: system-deps install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

smoke: system-deps install
	$(BIN)/python -m bootsep.smoke $(if $(SMOKE_DIR),--dir $(SMOKE_DIR),)

bench: install
	$(BIN)/python bench/spatial_throughput.py
	$(BIN)/python bench/train_throughput.py

clean-venv:
	rm -rf $(VENV)
