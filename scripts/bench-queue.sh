#!/usr/bin/env bash
# bench-queue.sh: the queue benchmark beside redis-benchmark, against one local redis-server.
#
# Starts its own redis-server (no persistence) on a free port in a temp dir, runs
# `redis-benchmark -t lpush -P 64 -q` against it, then `cargo bench --bench queue` against the
# same server, and prints both figures. Never touches the Redis on 6379.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || {
        echo "bench-queue.sh: $tool not found on PATH: install it with 'apt-get install redis-server redis-tools'" >&2
        exit 2
    }
done

dir=$(mktemp -d -t loglines-bench-XXXXXX)
port=""
cleanup() {
    [ -n "$port" ] && redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(start_redis "$dir") || { echo "bench-queue.sh: could not start redis-server" >&2; exit 1; }

echo "== redis-server $(redis-cli -p "$port" info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p') on 127.0.0.1:$port, $(nproc) cores"
echo "== redis-benchmark -p $port -t lpush -P 64 -q -n 2000000"
rb=$(redis-benchmark -p "$port" -t lpush -P 64 -q -n 2000000 2>&1 | tr '\r' '\n' | grep -E '^LPUSH: .* requests per second' | tail -1)
echo "$rb"
redis-cli -p "$port" del __rand_int__ mylist >/dev/null

echo "== cargo bench --bench queue (same server)"
out=$(LOGLINES_BENCH_REDIS_PORT=$port cargo bench --bench queue 2>&1)
echo "$out" | grep -E '^(push|take\+ack)/|thrpt'

echo
echo "== summary (messages per second; criterion's middle estimate)"
echo "redis-benchmark LPUSH -P 64:  $(echo "$rb" | sed -E 's/^LPUSH: ([0-9.]+) requests per second.*/\1/')"
echo "$out" | awk '/^(push|take\+ack)\// {name=$1} /thrpt:/ && name != "" {print "loglines " name " (batch): " $4 " " $5; name=""}'
