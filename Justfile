# pqguard: every entry point. `just demo` shows it working; `just test` is what CI runs.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
python := venv / "bin/python"
wasm := justfile_directory() / "dist/pqguard.wasm"

# List the recipes.
default:
    @just --list

# Install everything the other recipes need (idempotent).
setup:
    rustup target add wasm32-wasip1 wasm32-unknown-unknown
    rustup component add clippy rustfmt
    test -x {{python}} || python3 -m venv {{venv}}
    {{python}} -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    just _wasm-bindgen-cli

# wasm-bindgen-test-runner, at the exact wasm-bindgen version in Cargo.lock.
_wasm-bindgen-cli:
    #!/usr/bin/env bash
    set -euo pipefail
    want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' Cargo.lock)
    have=$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)
    if [ "$have" != "$want" ]; then
        echo "installing wasm-bindgen-cli $want (have: ${have:-none})"
        cargo install --quiet wasm-bindgen-cli --version "$want"
    fi

# Build the release filter into dist/pqguard.wasm and print its size.
build:
    cargo build --release --locked --target wasm32-wasip1 -p pqguard-plugin
    mkdir -p dist
    cp target/wasm32-wasip1/release/pqguard.wasm {{wasm}}
    @echo "dist/pqguard.wasm: $(stat -c %s {{wasm}}) bytes, sha256 $(sha256sum {{wasm}} | cut -d' ' -f1)"

# Build the native CLI (target/release/pqguard).
cli:
    cargo build --release --locked -p pqguard-cli

# Start the real topology, run a scripted MCP session with a post-quantum and a classical client, print what each hop negotiated, stop everything.
demo: setup build
    {{python}} tests/demo.py

# Formatting and lints, native and wasm32-wasip1, warnings are errors.
lint:
    cargo fmt --all --check
    cargo clippy --locked --workspace --all-targets -- -D warnings
    cargo clippy --locked --target wasm32-wasip1 -p pqguard-core -p pqguard-plugin -- -D warnings

# Unit tests of every crate, natively.
test-unit:
    cargo test --locked --workspace

# The core's tests compiled to wasm and run in V8 (Node) with wasm-bindgen-test.
test-wasm:
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        cargo test --locked --target wasm32-unknown-unknown -p pqguard-core

# End-to-end tests against real Envoy 1.40, real MCP server and client, real hybrid PQ TLS.
test-e2e: build
    {{python}} -m pytest -c tests/pytest.ini tests/e2e

# Token interop: pqguard's CLI against an independent ML-DSA implementation (dilithium-py).
test-interop:
    cargo build --locked -p pqguard-cli
    PQGUARD_CLI=target/debug/pqguard {{python}} -m pytest -c tests/pytest.ini tests/interop

# Everything CI runs.
test: setup lint test-unit test-wasm test-interop test-e2e

# Benchmarks, figures only (no pass/fail): body inspection natively and as wasm in V8, then Envoy requests/s with and without pqguard. About 3 minutes; see bench/README.md.
bench: setup build _wrk
    cargo build --release --locked -p pqguard-bench
    cargo build --release --locked --target wasm32-wasip1 -p pqguard-bench --bin parse-throughput --example passthrough-filter
    mkdir -p target/bench
    @echo "== parse-throughput, native"
    target/release/parse-throughput --json > target/bench/parse-native.json
    @echo "== parse-throughput, wasm32-wasip1 in V8 (Node.js)"
    node bench/run-wasm.mjs --json > target/bench/parse-wasm.json
    @echo "== Envoy requests/s with and without pqguard"
    {{python}} bench/envoy_rps.py --json target/bench/rps.json \
        --parse-throughput target/release/parse-throughput \
        --passthrough-wasm target/wasm32-wasip1/release/examples/passthrough_filter.wasm
    @echo
    {{python}} bench/summary.py target/bench

# wrk, the load generator of `just bench` (Debian package).
_wrk:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v wrk >/dev/null && exit 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq wrk
    else
        echo "wrk is needed: install it (Debian/Ubuntu: sudo apt-get install wrk)" >&2
        exit 1
    fi
