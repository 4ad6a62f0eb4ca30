# Two commands for a fresh clone: `make book` (the study end to end) and `make test`.
# Both build .venv/ from requirements.lock (exact pins) the first time.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= cpu
DATA   ?=
CHAPTERS ?=
TRAIN_COMMITTED ?=
PYTEST_ARGS ?=

.PHONY: book test bench browser venv clean-book

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.lock 2>$(VENV)/pip.log || { cat $(VENV)/pip.log; exit 1; }
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# Headless Chromium for the book's browser test (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# --dist loadfile: a test file runs on one worker, so tests/test_book.py builds the smoke book once.
test: $(STAMP) browser
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

# The same runner and cache as `LIPSTUDY_PROFILE=$(PROFILE) jupyter-book build book/` (see _config.yml).
book: $(STAMP)
	$(BIN)/lipstudy book --profile $(PROFILE) $(if $(DATA),--data $(DATA)) $(if $(CHAPTERS),--chapters $(CHAPTERS)) \
	  $(if $(TRAIN_COMMITTED),--train-committed)

bench: $(STAMP)
	for f in benchmarks/[a-z]*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-book:
	rm -rf book/_build book/_executed results/chapters
