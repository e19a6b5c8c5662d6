#!/usr/bin/env bash
# The whole story on a fresh machine: installs the sandbox's servers, builds
# mailrestore and the sandbox's `quickstart` (crate mailrestore-sandbox), and
# runs it: real Dovecot, Radicale and Postfix on loopback, a demo mailbox, and
# `mailrestore serve` driven through the `mailrestore` command line.
set -euo pipefail
cd "$(dirname "$0")/.."
# The sandbox installs Debian packages and runs the servers' own privilege
# separation (dovenull, vmail), so it needs root.
if [ "$(id -u)" != 0 ]; then
    exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME "$0" "$@"
fi
bash scripts/install-deps.sh
cargo build --quiet -p mailrestore -p mailrestore-sandbox --bins
exec target/debug/quickstart --mailrestore target/debug/mailrestore "$@"
