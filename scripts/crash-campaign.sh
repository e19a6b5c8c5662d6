#!/usr/bin/env bash
# The crash campaign (tests/crash.rs): each run kills the daemon at a
# seeded step of its write order or at a seeded random moment, restarts
# it, and checks that every reported point is still listed, that
# `verify --read-data` is clean and that the restore holds each message
# and item exactly once. Every run prints its seed; a failure replays with
# `--seed <that seed> --runs 1`. With `--power-cuts N`, N more runs keep
# the state directory on a power-loss file system and cut the power at the
# crash (or at the end): every point the API reported must survive it.
#
#   scripts/crash-campaign.sh [--seed N] [--runs N] [--power-cuts N]
#                                               (default 1, 200, 50)
#
# Needs what the test suite needs (scripts/install-deps.sh, root).
set -euo pipefail
cd "$(dirname "$0")/.."
seed=1
runs=200
power=50
while [ $# -gt 0 ]; do
    case "$1" in
        --seed) seed="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --power-cuts) power="$2"; shift 2 ;;
        *) echo "usage: $0 [--seed N] [--runs N] [--power-cuts N]" >&2; exit 2 ;;
    esac
done
export CRASH_SEED="$seed" CRASH_RUNS="$runs" POWER_RUNS="$power"
exec cargo nextest run -p mailrestore --features mailrestore/failpoints \
    --profile campaign --test crash --no-capture -E 'test(crash_campaign) | test(power_cut_campaign)'
