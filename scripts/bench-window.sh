#!/usr/bin/env bash
# bench-window.sh: a worker's events per second against a tracker far away, by `concurrency`
# (a benchmark, not a test).
#
# Starts the tracker stand-in (examples/tracker.rs) answering every request DELAY_MS late
# (default 100, a tracker across an ocean), then for each concurrency in CONCURRENCIES (default
# "1 8 32 128") runs `loglines run --once` with one worker thread on a log of only downloads
# (examples/loggen.rs with EVERY=1), EVENTS_PER_SLOT events per request in flight (default 40,
# so each run takes about 4 s), and prints events/s beside the ideal (concurrency / delay)
# measured in the same run, and the run's peak RSS (GNU time; the whole embedded pipeline, an
# upper bound for one worker process). Then, with no delay, concurrency 1 and 8 on loopback
# (FAST_EVENTS events each, default 20000): the window must not cost the fast case.
# Every run's count of events sent (its summary) is checked against the events expected.
#
# Environment: DELAY_MS, CONCURRENCIES, EVENTS_PER_SLOT, FAST_EVENTS, CARGO_TARGET_DIR,
# SKIP_BUILD=1 uses the binaries as built, KEEP=1 keeps the temp dir.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
root=$(pwd)
DELAY_MS=${DELAY_MS:-100}
CONCURRENCIES=${CONCURRENCIES:-1 8 32 128}
EVENTS_PER_SLOT=${EVENTS_PER_SLOT:-40}
FAST_EVENTS=${FAST_EVENTS:-20000}
target=${CARGO_TARGET_DIR:-$root/target}

command -v /usr/bin/time >/dev/null || {
    echo "bench-window.sh: /usr/bin/time not found: install it with 'apt-get install time'" >&2
    exit 2
}
release_bins bench-window.sh

dir=$(mktemp -d -t loglines-window-XXXXXX)
tracker_pid=""
cleanup() {
    [ -n "$tracker_pid" ] && kill -TERM "$tracker_pid" 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

# start_tracker DELAY: a fresh stand-in answering DELAY ms late; sets $endpoint.
start_tracker() {
    "$tracker_bin" --port 0 --delay-ms "$1" </dev/null >"$dir/tracker.out" 2>&1 &
    tracker_pid=$!
    for _ in $(seq 1 100); do
        grep -q '^listening on ' "$dir/tracker.out" && break
        sleep 0.05
    done
    endpoint="$(sed -n 's/^listening on //p' "$dir/tracker.out")counter/test/"
}

stop_tracker() {
    kill -KILL "$tracker_pid" 2>/dev/null || true
    wait "$tracker_pid" 2>/dev/null || true
    tracker_pid=""
}

# run_window CONCURRENCY EVENTS DELAY: sets $eps (events/s over the whole run) and $rss (KiB).
run_window() {
    local c=$1 events=$2 t0 t1 sent
    start_tracker "$3"
    local d="$dir/c$c"
    rm -rf "$d"
    mkdir -p "$d"
    "$loggen_bin" "$d/access.log" "$events" 1 >/dev/null
    cat >"$d/loglines.cfg" <<EOF
[loglines]
state_dir = state

[logger_watch]
command = loglines watch
logfile = access.log
pushto = pirus2
servicename = repo.example.ac.uk
start_at = beginning

[worker_pirus2]
command = loglines worker
listento = pirus2
numprocs = 1
batch_size = $((c * 4 > 100 ? c * 4 : 100))
repository_plugin = $root/lua_plugins/irus.lua
endpoint_url = $endpoint
concurrency = $c
pauseonfail = 1

[irus]
repository = repo.example.ac.uk
EOF
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$d/time" "$bin" --config "$d/loglines.cfg" run --once \
        </dev/null >"$d/run.out" 2>&1 || { cat "$d/run.out" >&2; exit 1; }
    t1=$(date +%s.%N)
    stop_tracker
    # The run's summary: how many events the tracker accepted.
    sent=$(sed -n 's/.*; \([0-9]*\) sent to the tracker.*/\1/p' "$d/run.out")
    [ "$sent" = "$events" ] || { echo "bench-window.sh: concurrency $c: $sent events sent, expected $events" >&2; cat "$d/run.out" >&2; exit 1; }
    eps=$(awk -v n="$events" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", n / (b - a) }')
    rss=$(tail -1 "$d/time")
}

echo "== one worker thread, tracker answering ${DELAY_MS} ms late" >&2
printf '%-12s %10s %10s %8s %10s\n' concurrency events/s ideal share "peak RSS"
for c in $CONCURRENCIES; do
    run_window "$c" $((c * EVENTS_PER_SLOT)) "$DELAY_MS" || exit 1
    ideal=$(awk -v c="$c" -v d="$DELAY_MS" 'BEGIN { printf "%d", c * 1000 / d }')
    printf '%-12s %10s %10s %7s%% %7s MiB\n' "$c" "$eps" "$ideal" \
        "$(awk -v e="$eps" -v i="$ideal" 'BEGIN { printf "%d", 100 * e / i }')" \
        "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')"
done

echo "== no delay (loopback): concurrency 1 vs 8, $FAST_EVENTS events each" >&2
for c in 1 8; do
    run_window "$c" "$FAST_EVENTS" 0 || exit 1
    printf 'loopback, concurrency %-3s %8s events/s\n' "$c" "$eps"
done
