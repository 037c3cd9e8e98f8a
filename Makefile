# The two quickstart commands: `make run` (whole pipeline on real MNIST) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN    ?= runs/default
LE     := $(BIN)/lenet-edge

.PHONY: run test test-slow lint system-deps bench fuzz fuzz-reader fuzz-engine clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

run: $(VENV)/.installed system-deps
	$(LE) data fetch
	$(LE) train --out $(RUN)
	$(LE) quantize $(RUN)/model.keras --out $(RUN)/model_int8.tflite
	$(LE) verify $(RUN)/model_int8.tflite --reference $(RUN)/model.keras --backend all \
	    --json $(RUN)/verify.json
	$(LE) export-c $(RUN)/model_int8.tflite --out $(RUN)/c
	$(MAKE) -C $(RUN)/c/test test
	$(LE) package $(RUN)/c --format all
	$(LE) mcu-test $(RUN)/c --board all --json $(RUN)/mcu.json
	$(LE) report $(RUN)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(VENV)/.installed system-deps lint
	$(BIN)/pytest -q

test-slow: $(VENV)/.installed system-deps
	$(BIN)/pytest -q -m slow

bench: $(VENV)/.installed system-deps
	$(LE) bench --out benchmarks

# The long fuzz runs (issue 7), on the seed model that `make run` writes; each writes its
# figures (cases, outcomes, wall time, findings) to build/fuzz/*.json and exits 1 on a finding.
fuzz: fuzz-reader fuzz-engine

fuzz-reader: $(VENV)/.installed
	$(BIN)/python scripts/fuzz_reader.py --cases 100000 --model $(RUN)/model_int8.tflite \
	    --out build/fuzz/reader.json

fuzz-engine: $(VENV)/.installed
	$(BIN)/python scripts/fuzz_engine.py --random 100000 --images 10000 \
	    --model $(RUN)/model_int8.tflite --out build/fuzz/engine.json
	$(BIN)/python scripts/fuzz_engine.py --random 100000 --images 10000 --optimize size \
	    --model $(RUN)/model_int8.tflite --out build/fuzz/engine_size.json

clean:
	rm -rf runs build .pytest_cache .mypy_cache .ruff_cache
