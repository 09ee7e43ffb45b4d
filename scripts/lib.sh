# lib.sh: shell functions shared by the benchmark scripts (sourced, not run).

# start_redis DIR: starts a throw-away redis-server (no persistence, 127.0.0.1 only) on a free
# port with its files in DIR, waits until it answers PING, and prints the port. Never the
# machine's own Redis on 6379. Returns 1 when no server could be started.
start_redis() {
    local dir=$1 candidate
    for _ in $(seq 1 20); do
        candidate=$((20000 + RANDOM % 20000))
        if redis-server --port "$candidate" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$dir" --logfile redis.log --daemonize yes 2>/dev/null; then
            for _ in $(seq 1 100); do
                if redis-cli -p "$candidate" ping 2>/dev/null | grep -q PONG; then
                    echo "$candidate"
                    return 0
                fi
                sleep 0.05
            done
        fi
    done
    return 1
}

# release_bins NAME: builds the release binaries and examples (unless SKIP_BUILD=1) and sets
# $bin, $tracker_bin and $loggen_bin under $target; NAME is the calling script, for messages.
release_bins() {
    local name=$1 b
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        echo "== cargo build --release --bins --examples" >&2
        cargo build --release --bins --examples >&2
    fi
    bin=$target/release/loglines
    tracker_bin=$target/release/examples/tracker
    loggen_bin=$target/release/examples/loggen
    for b in "$bin" "$tracker_bin" "$loggen_bin"; do
        [ -x "$b" ] || { echo "$name: $b missing; build with cargo build --release --bins --examples" >&2; exit 2; }
    done
}
