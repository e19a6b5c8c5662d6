#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (the parsers of what IMAP and DAV
# servers send and of what the disk holds).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  how long each target runs (libFuzzer -max_total_time), default 900
#   TARGET   targets to run, default all of `cargo fuzz list`
# Environment:
#   FUZZ_JOBS   libFuzzer -jobs/-workers (default 1: one core)
#   FUZZ_ARGS   extra libFuzzer flags (e.g. "-max_len=65536")
#
# Installs cargo-fuzz if missing and builds with nightly (`cargo +nightly
# fuzz build`), then runs each target on its seeds (fuzz/seeds/<target>,
# read only) and its persistent corpus (fuzz/corpus/<target>, where new
# inputs are kept between runs), with -rss_limit_mb=2048 and
# -malloc_limit_mb=2048. For each target it prints the executions, exec/s
# (libFuzzer's -print_final_stats) and the CPU seconds used. Crashing
# inputs land in fuzz/artifacts/<target>/; libFuzzer's log of each run is in
# fuzz/target/fuzz-logs/<target>/. Exits non-zero when any target found a
# crash, an OOM or a timeout, and lists the artifacts.
#
# Reproduce an artifact: cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/fuzz"
seconds="${1:-900}"
shift || true
jobs="${FUZZ_JOBS:-1}"
extra="${FUZZ_ARGS:-}"

if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

cd "$fuzz"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "== building ${targets[*]}"
if [ "$#" -gt 0 ]; then
    for target in "${targets[@]}"; do
        cargo +nightly fuzz build "$target"
    done
else
    cargo +nightly fuzz build
fi

triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="$fuzz/target/$triple/release"

failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$fuzz/corpus/$target"
    seeds="$fuzz/seeds/$target"
    artifacts="$fuzz/artifacts/$target"
    logs="$fuzz/target/fuzz-logs/$target"
    mkdir -p "$corpus" "$seeds" "$artifacts" "$logs"
    rm -f "$logs"/fuzz-*.log
    stamp="$logs/.started"
    touch "$stamp"

    echo "== $target: ${seconds}s, jobs=$jobs"
    # -jobs runs the fuzzer in a child whose output goes to fuzz-N.log in
    # the current directory; bash's `time` counts the CPU of all children.
    TIMEFORMAT="%U %S"
    set +e
    cpu="$( { time (cd "$logs" && "$bin_dir/$target" \
        -max_total_time="$seconds" \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -timeout=25 \
        -print_final_stats=1 \
        -jobs="$jobs" -workers="$jobs" \
        -artifact_prefix="$artifacts/" \
        $extra \
        "$corpus" "$seeds" >"$logs/driver.log" 2>&1) ; } 2>&1 )"
    status=$?
    set -e
    user="${cpu%% *}"
    sys="${cpu##* }"

    stats="$(cat "$logs"/fuzz-*.log "$logs/driver.log" 2>/dev/null)"
    stat() {
        # Sum over workers (each prints its own final stats).
        awk -v key="stat::$1:" '$1 == key { n += $2 } END { printf "%d", n }' <<<"$stats"
    }
    execs="$(stat number_of_executed_units)"
    rate="$(stat average_exec_per_sec)"
    rss="$(awk '$1 == "stat::peak_rss_mb:" && $2 > m { m = $2 } END { printf "%d", m }' <<<"$stats")"
    cpu_s="$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')"
    corpus_n="$(find "$corpus" -type f | wc -l)"

    mapfile -t found < <(find "$artifacts" -maxdepth 1 -type f -newer "$stamp" \
        \( -name 'crash-*' -o -name 'oom-*' -o -name 'leak-*' -o -name 'timeout-*' \) | sort)
    line="$(printf '%-16s execs=%-10s exec/s=%-7s cpu_s=%-7s peak_rss_mb=%-5s corpus=%s' \
        "$target" "$execs" "$rate" "$cpu_s" "$rss" "$corpus_n")"
    if [ "${#found[@]}" -gt 0 ] || [ "$status" -ne 0 ]; then
        line="$line  FAILED (exit $status)"
        failed+=("$target")
        if [ "${#found[@]}" -gt 0 ]; then
            for a in "${found[@]}"; do line="$line"$'\n'"    artifact: $a"; done
        else
            line="$line"$'\n'"    no artifact; see $logs"
        fi
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== ${#failed[@]} target(s) found a problem: ${failed[*]}" >&2
    exit 1
fi
