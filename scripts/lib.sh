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
