#!/usr/bin/env bash
# Missive's one test command: what a newcomer runs and what CI runs (.ci/run calls it).
# Formatting, lints, every test, the docs, and a short fuzz run. It installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "C API: header current, C and Python examples, C tests under valgrind"
bash ffi/run.sh

step "loom models (bounded preemptions; own target dir: --cfg loom rebuilds everything)"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
  cargo test --locked --release -p missive-log --test loom_ticket
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
  cargo test --locked --release -p missive-fanout --test loom_hub

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "fuzz: a short run of every target (stable, no sanitizer)"
bash fuzz/run.sh

step "benchmark tools: peers --quick and missive-load --quick complete (figures not checked)"
cargo fmt --check --manifest-path benches/peers/Cargo.toml
bash benches/smoke.sh

step "all checks passed"
