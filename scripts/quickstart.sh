#!/usr/bin/env bash
# The whole story on a fresh machine: installs the sandbox's servers, builds
# mailrestore and runs `mailrestore quickstart` (real Dovecot, Radicale and
# Postfix on loopback, a demo mailbox, the daemon and its socket API).
set -euo pipefail
cd "$(dirname "$0")/.."
# The sandbox installs Debian packages and runs the servers' own privilege
# separation (dovenull, vmail), so it needs root.
if [ "$(id -u)" != 0 ]; then
    exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME "$0" "$@"
fi
bash scripts/install-deps.sh
cargo build --quiet --bin mailrestore
exec target/debug/mailrestore quickstart "$@"
