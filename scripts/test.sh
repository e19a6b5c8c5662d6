#!/usr/bin/env bash
# The test suite: installs the real servers the integration tests start
# (Dovecot, Postfix, Radicale, Xandikos) when they are missing, checks the
# formatting and the lints (rustfmt, clippy with warnings as errors), then
# runs every test of the workspace. A missing server makes its tests fail,
# never skip.
set -euo pipefail
cd "$(dirname "$0")/.."
# The sandbox installs Debian packages and runs the servers' own privilege
# separation (dovenull, vmail), so it needs root.
if [ "$(id -u)" != 0 ]; then
    exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME "$0" "$@"
fi
bash scripts/install-deps.sh
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
# `failpoints` builds the crash points the crash campaign and the kill
# tests use (src/failpoint.rs); a release build never has them.
exec cargo nextest run --workspace --features mailrestore/failpoints --no-fail-fast "$@"
