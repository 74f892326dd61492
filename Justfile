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

# A test-only variant of the module that traps on `x-pqguard-fault: trap` (target/pqguard-fault.wasm; never shipped).
_fault-wasm:
    cargo build --release --locked --target wasm32-wasip1 -p pqguard-plugin --features fault-injection
    cp target/wasm32-wasip1/release/pqguard.wasm target/pqguard-fault.wasm
    cargo build --release --locked --target wasm32-wasip1 -p pqguard-plugin

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

# End-to-end tests against real Envoy 1.40, real MCP server and client, real hybrid PQ TLS (and a real Prometheus).
test-e2e: build _fault-wasm _prometheus
    {{python}} -m pytest -c tests/pytest.ini tests/e2e

# The CLI against independent implementations: tokens and audit logs made with dilithium-py and hashlib, tool pins.
test-interop: _chromium
    cargo build --locked -p pqguard-cli
    PQGUARD_CLI=target/debug/pqguard {{python}} -m pytest -c tests/pytest.ini tests/interop tests/audit

# pqguard.wasm in a second proxy-wasm host: proxy-wasm-host (wasmtime, ABI 0.2.1), a package with its own lock file and Rust 1.96.
test-hosts: build
    rustup toolchain install 1.96 --profile minimal --component rustfmt,clippy
    cd tests/hosts/proxy-wasm-host && cargo fmt --check
    cd tests/hosts/proxy-wasm-host && CARGO_TARGET_DIR={{justfile_directory()}}/target/hosts cargo clippy --locked --all-targets -- -D warnings
    cd tests/hosts/proxy-wasm-host && CARGO_TARGET_DIR={{justfile_directory()}}/target/hosts PQGUARD_WASM={{wasm}} cargo test --locked

# Everything CI runs.
test: setup lint test-unit test-wasm test-interop test-e2e test-hosts test-ship fuzz-smoke

# Soak: real Envoy with pqguard under open-loop load at half of saturation for MINUTES, rotating token keys and pushing a new configuration every minute; a report per minute (tests/soak.py). `just test` runs a 30-second smoke of it.
soak MINUTES="10" *ARGS: build
    {{python}} tests/soak.py --minutes {{MINUTES}} {{ARGS}}

# The fuzzing toolchain: a nightly Rust for the fuzz package only, and cargo-fuzz (idempotent).
_fuzz-setup:
    #!/usr/bin/env bash
    set -euo pipefail
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
    cargo fuzz --version 2>/dev/null | grep -q '0.13.2' || cargo install --quiet --locked cargo-fuzz --version 0.13.2

# Fuzz one target for SECONDS (targets: json_scan mcp_body engine_request tools_list jws jwks config audit_line bind_proof). New inputs go to fuzz/work/TARGET (not committed); a crash is left in fuzz/artifacts/TARGET and fails the run. See fuzz/README.md.
fuzz TARGET SECONDS="60": _fuzz-setup
    mkdir -p fuzz/work/{{TARGET}}
    cd fuzz && cargo +nightly fuzz run -O {{TARGET}} work/{{TARGET}} corpus/{{TARGET}} -- -max_total_time={{SECONDS}} -rss_limit_mb=2048 -print_final_stats=1

# Every fuzz target briefly (the committed seeds, regressions included, then 10 s of new inputs each); fails on any crash.
fuzz-smoke SECONDS="10": _fuzz-setup
    #!/usr/bin/env bash
    set -euo pipefail
    cd fuzz
    cargo +nightly fuzz build -O
    for target in $(cargo +nightly fuzz list); do
        work=$(mktemp -d)
        echo "== fuzz $target ({{SECONDS}} s)"
        if ! cargo +nightly fuzz run -O "$target" "$work" "corpus/$target" -- -max_total_time={{SECONDS}} -rss_limit_mb=2048 > "$work.log" 2>&1; then
            tail -n 80 "$work.log"
            echo "fuzz target $target failed (the crashing input is in fuzz/artifacts/$target)"
            exit 1
        fi
        grep -E '^Done' "$work.log"
        rm -rf "$work" "$work.log"
    done

# Benchmarks, figures only (no pass/fail): body inspection natively and as wasm in V8, then Envoy requests/s with and without pqguard. About 3 minutes; see bench/README.md.
bench: setup build _wrk
    cargo build --release --locked -p pqguard-bench
    cargo build --release --locked --target wasm32-wasip1 -p pqguard-bench --bin parse-throughput --example passthrough-filter
    mkdir -p target/bench
    @echo "== parse-throughput, native"
    target/release/parse-throughput --json > target/bench/parse-native.json
    @echo "== parse-throughput, wasm32-wasip1 in V8 (Node.js)"
    node bench/run-wasm.mjs --json > target/bench/parse-wasm.json
    @echo "== decision costs (token verification, policy, audit), native"
    cargo build --release --locked -p pqguard-bench --bin decision-costs
    target/release/decision-costs | tee target/bench/decisions-native.csv
    @echo "== decision costs, wasm32-wasip1 in V8 (Node.js)"
    cargo build --release --locked --target wasm32-wasip1 -p pqguard-bench --bin decision-costs
    node bench/run-wasm.mjs --wasm target/wasm32-wasip1/release/decision-costs.wasm | tee target/bench/decisions-wasm.csv
    @echo "== Envoy requests/s with and without pqguard"
    {{python}} bench/envoy_rps.py --json target/bench/rps.json \
        --parse-throughput target/release/parse-throughput \
        --passthrough-wasm target/wasm32-wasip1/release/examples/passthrough_filter.wasm
    @echo
    {{python}} bench/summary.py target/bench

# pqguard's cost side by side with Envoy's native jwt_authn + mcp + RBAC chain, a do-nothing wasm filter and PQ-token baselines, in one Envoy, medians of per-round ratios (bench/README.md). About 4 minutes with the defaults. ARGS: --rounds N --seconds S --before OLD.wasm --open-loop RATE (needs oha: cargo install --locked oha) --startup --json FILE.
bench-compare *ARGS: setup build _wrk
    cargo build --release --locked -p pqguard-cli
    cargo build --release --locked --target wasm32-wasip1 -p pqguard-bench --example passthrough-filter
    {{python}} bench/compare.py {{ARGS}}

# Where a benchmark binary spends its time in V8, by function (built with symbols into target/symbols): `just bench-profile decision-costs MlDsaKey6verify`.
bench-profile BIN="decision-costs" UNDER="":
    CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=target/symbols cargo build --release --locked --target wasm32-wasip1 -p pqguard-bench --bin {{BIN}}
    {{python}} bench/v8_profile.py target/symbols/wasm32-wasip1/release/{{BIN}}.wasm --under "{{UNDER}}"

# `audit verify` and `audit report` on a generated Envoy log of SIZE bytes (default 1 GiB; valid signed chains of 4 workers among Envoy's other lines, bench/src/bin/audit-big-log.rs), plain and gzipped: time and peak RSS of each. Not part of `just test`; the log and its gzip are deleted at the end. PQGUARD: the binary to measure (an older build, to compare).
audit-big-log SIZE="1073741824" PQGUARD="target/release/pqguard":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release --locked -p pqguard-cli -p pqguard-bench --bin pqguard --bin audit-big-log
    dir=$(mktemp -d "${TMPDIR:-/tmp}/pqguard-big-log.XXXXXX")
    trap 'rm -rf "$dir"' EXIT
    target/release/audit-big-log --out "$dir/envoy.log" --jwks "$dir/audit-jwks.json" --bytes {{SIZE}}
    gzip -c "$dir/envoy.log" > "$dir/envoy.log.1.gz"
    for log in envoy.log envoy.log.1.gz; do
        echo "$log: $(stat -c %s "$dir/$log") bytes"
        for run in "verify --jwks $dir/audit-jwks.json --max-unverified 0" "report" "report --html $dir/page.html --force"; do
            status=0
            /usr/bin/time -f '%e %M' -o "$dir/time" {{PQGUARD}} audit $run "$dir/$log" > "$dir/out" 2> "$dir/err" || status=$?
            read -r secs kib < <(tail -n 1 "$dir/time")
            what=$(grep -m1 -E '^(intact|TAMPERED|FAILED)' "$dir/out" | cut -c1-60 || head -c 100 "$dir/err")
            awk -v r="$(echo "$run" | cut -d' ' -f1-2 | sed 's/ --jwks//')" -v c="$status" -v s="$secs" -v k="$kib" -v w="$what" \
                'BEGIN { printf "  audit %-15s exit %s %7.1f s  peak RSS %8.1f MiB  %s\n", r, c, s, k / 1024, w }'
        done
    done

# Chromium, which renders the HTML crypto inventory in the audit tests (Debian package).
_chromium:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v chromium >/dev/null && exit 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        echo "chromium is needed by the audit tests: install it (Debian/Ubuntu: sudo apt-get install chromium)" >&2
        exit 1
    fi

# Prometheus, which the e2e tests scrape Envoy with (Debian package).
_prometheus:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v prometheus >/dev/null && exit 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
        echo "prometheus is needed by the e2e tests: install it (Debian/Ubuntu: sudo apt-get install prometheus)" >&2
        exit 1
    fi

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

# --- Shipping: OCI image, compose stack, Kubernetes examples, releases (README, "Deploying") ---

# Debian packages of the shipping tests (podman, runc, docker-registry, skopeo) and the Python test dependencies; idempotent.
setup-ship:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for tool in podman runc docker-registry skopeo; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing ${missing[*]}"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "needed: ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
            exit 1
        fi
    fi
    test -x {{python}} || python3 -m venv {{venv}}
    {{python}} -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

# Package dist/pqguard.wasm as an OCI image layout in dist/oci/: tag VERSION (Wasm artifact) and VERSION-compat (plugin.wasm image).
oci: build
    {{python}} deploy/oci/build_layout.py --wasm {{wasm}} --out dist/oci

# Regenerate envoy/compose/edge.yaml and server.yaml from the Envoy templates the tests run.
compose-configs:
    cd tests && {{python}} -m harness.compose write

# Demo CA and certificates for envoy/compose.yaml in dist/compose/certs (valid 2 days; run again to renew).
compose-certs:
    cd tests && {{python}} -m harness.compose certs {{justfile_directory()}}/dist/compose/certs

# Run envoy/compose.yaml with podman-compose (images built locally), run the demo scenario against it, tear it down.
compose-test: setup-ship build
    {{python}} -m pytest -c tests/pytest.ini tests/ship/test_compose.py

# The shipping tests: the OCI image through a real registry into Envoy, the compose stack, the Kubernetes examples.
test-ship: setup-ship build
    {{python}} -m pytest -c tests/pytest.ini tests/ship

# Release artifacts in dist/release/VERSION/: pqguard.wasm and its SHA-256, the OCI layout (directory and tar), the pqguard CLI.
release VERSION:
    #!/usr/bin/env bash
    set -euo pipefail
    version="{{VERSION}}"
    if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
        echo "VERSION must look like 1.2.3 or 1.2.3-rc.1 (it is also the OCI tag)" >&2
        exit 2
    fi
    crate_version=$({{python}} -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"])')
    [ "$version" = "$crate_version" ] || echo "note: VERSION $version differs from the workspace version $crate_version in Cargo.toml"
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    build="$commit"
    [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || build="$commit-dirty"
    # Read by pqguard-core (option_env!) at build time: logged in pqguard.start and printed by `pqguard version`.
    export PQGUARD_VERSION="$version" PQGUARD_BUILD="$build"
    # The OCI layout's creation time and tar mtimes: the commit's time, so a rebuild gives the same digests.
    export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
    triple=$(rustc -vV | sed -n 's/^host: //p')
    out=dist/release/$version
    rm -rf "$out" && mkdir -p "$out"
    cargo build --release --locked --target wasm32-wasip1 -p pqguard-plugin
    cargo build --release --locked -p pqguard-cli
    cp target/wasm32-wasip1/release/pqguard.wasm "$out/pqguard.wasm"
    cp target/release/pqguard "$out/pqguard-$version-$triple"
    {{python}} deploy/oci/build_layout.py --wasm "$out/pqguard.wasm" --out "$out/oci" \
        --version "$version" --revision "$build" --tar "$out/pqguard-$version-oci.tar"
    # The version and build must be in both binaries.
    "$out/pqguard-$version-$triple" version | grep -qE "^pqguard $version( |$)" \
        || { echo "the CLI does not report version $version" >&2; exit 1; }
    {{python}} -c 'import sys; data = open(sys.argv[1], "rb").read(); missing = [s for s in sys.argv[2:] if s.encode() not in data]; sys.exit(f"not embedded in pqguard.wasm: {missing}" if missing else 0)' \
        "$out/pqguard.wasm" "$version" "$build"
    cd "$out"
    sha256sum pqguard.wasm > pqguard.wasm.sha256
    sha256sum pqguard.wasm "pqguard-$version-$triple" "pqguard-$version-oci.tar" > SHA256SUMS
    echo "release $version (build $build) in $out:"
    cat SHA256SUMS
    echo "OCI manifests: $(tr ',' '\n' < oci/index.json | grep -o 'sha256:[0-9a-f]*' | tr '\n' ' ')"
