# `make chat` and `make test` set everything up on a fresh machine, then run.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: chat test test-fast test-llm eval bench soak clean

$(BIN)/sanad: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first: 2.13.0 is a CPU build served from this machine's disk; any other version pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

chat: $(BIN)/sanad
	$(BIN)/sanad chat

test: $(BIN)/sanad
	$(BIN)/python -m pytest -q
	$(BIN)/sanad eval --suite seeds --out eval/out/seeds

# The fast tier while working (under 3 minutes on 2 cores): every test but those marked slow, browser or service
# (markers in pyproject.toml). `make test` and CI run every tier.
test-fast: $(BIN)/sanad
	$(BIN)/python -m pytest -q -m "not slow and not browser and not service"

# LLM mode against a real local model: builds llama-cpp-python from source (~7 min on 2 cores) the first time.
test-llm: $(BIN)/sanad
	$(BIN)/pip install --quiet -e '.[dev,llm-local]'
	$(BIN)/python -m pytest -q tests/test_llm_local.py

eval: $(BIN)/sanad
	$(BIN)/sanad eval --suite seeds --out eval/out/seeds

bench: $(BIN)/sanad
	$(BIN)/sanad bench --out bench/out

# Over an hour on 2 cores (the reader reads 5 chunks a question): every QA-train and XQuAD question over all their paragraphs, then 10 kills of `sanad index`.
soak: $(BIN)/sanad
	$(BIN)/sanad eval --suite soak --out eval/out/soak
	$(BIN)/python -m eval.faults --trials 10 --out eval/out/faults

clean:
	rm -rf $(VENV) eval/out bench/out
