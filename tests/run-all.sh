#!/usr/bin/env bash
# Runs Tandem's whole test suite: unit tests of every crate and the end-to-end tests
# (real binaries, real mTLS on loopback, real SQLite files). Installs first whatever
# the tests need beyond the Rust toolchain (today: nothing — the SMTP server and the
# browser arrive with the alerting and console work, and will be installed here).
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests start the real binaries from target/debug.
cargo build --workspace --bins --locked
cargo test --workspace --locked
