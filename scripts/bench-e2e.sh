#!/usr/bin/env bash
# bench-e2e.sh: the end-to-end benchmark of issues 5 and 6 (a benchmark, not a test).
#
# Generates N combined-log lines (default 1,000,000; one in 20 a download, the realistic mix)
# with examples/loggen.rs, starts its own redis-server on a free port in a temp dir (never the
# machine's 6379) and the tracker stand-in (examples/tracker.rs), then measures, in one run:
#   1. wrk -c1 -t1 against the tracker stand-in: the ceiling of one keep-alive sender
#      (again between and after the rounds of step 3, since it swings with the machine's load);
#   2. the Redis topology (watch, broker, 3 workers, 2 file loggers, each its own process):
#      each stage alone on its preloaded input queue, then everything started together (end to
#      end); per stage the CPU per line of its processes and of redis-server; peak RSS (VmHWM,
#      read just before stopping) of every process; the CPU of each over 5 s once drained (idle);
#   3. tracker dispatch: DISPATCH_N downloads preloaded into the workers' queue, sent by one
#      worker process DISPATCH_ROUNDS times, each round between two wrk runs and compared with
#      them, then by 2 and 4 processes (timed from when all are up and the queue is filled at
#      once);
#   4. embedded: `loglines run --once FILE --endpoint TRACKER` on the same N lines, its CPU and
#      peak RSS (GNU time), and the ratio to the Redis topology.
# Every file logger line and tracker request is counted against what was expected. Prints a
# summary table on stdout (progress on stderr); cleans up everything it started. A few minutes
# at N=1,000,000. Throughput on a shared machine swings with its load (printed beside each
# step); CPU per line does much less.
#
# Environment: N (lines, default 1000000), DISPATCH_N (default 50000), DISPATCH_ROUNDS
# (default 3), CARGO_TARGET_DIR,
# KEEP=1 keeps the temp dir (configs, role outputs), SKIP_BUILD=1 uses the binaries as built.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
root=$(pwd)
N=${N:-1000000}
DISPATCH_N=${DISPATCH_N:-50000}
DISPATCH_ROUNDS=${DISPATCH_ROUNDS:-3}
[[ "$DISPATCH_ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench-e2e.sh: DISPATCH_ROUNDS must be a whole number of 1 or more, not '$DISPATCH_ROUNDS'" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-$root/target}

for tool in redis-server redis-cli wrk /usr/bin/time; do
    command -v "$tool" >/dev/null || {
        echo "bench-e2e.sh: $tool not found: install it with 'apt-get install redis-server redis-tools wrk time'" >&2
        exit 2
    }
done

release_bins bench-e2e.sh

dir=$(mktemp -d -t loglines-e2e-XXXXXX)
port=""
tracker_pid=""
pids=()        # role processes currently running
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    [ -n "$tracker_pid" ] && kill -TERM "$tracker_pid" 2>/dev/null || true
    [ -n "$port" ] && redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hz=$(getconf CLK_TCK)
now() { date +%s.%N; }
# rate COUNT SECONDS -> integer per second
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# Peak resident set size of PID in KiB (VmHWM), 0 if gone.
hwm() { awk '/^VmHWM:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# utime + stime of PID in clock ticks (fields 14 and 15; counted after the ")" closing the name).
cputicks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }
# CPU time of PID in nanoseconds, every thread (/proc/PID/task/*/schedstat, first field).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%d", t }'; }
# Voluntary context switches of PID, every thread: how often it went to sleep (woke up).
wakeups() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches:/ { t += $2 } END { printf "%d", t }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
llen() { redis-cli -p "$port" llen "$1"; }
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
load() { uptime | sed 's/.*load average: //'; }

summary=()     # lines of the final table
row() { summary+=("$(printf '%-44s %14s   %s' "$1" "$2" "$3")"); }

# --- inputs ---------------------------------------------------------------------------------
echo "== $(nproc) cores, load $(load); N=$N; work dir $dir" >&2
"$loggen_bin" "$dir/access.log" "$N" 20
"$loggen_bin" "$dir/downloads.log" "$DISPATCH_N" 1
log_bytes=$(size "$dir/access.log")
downloads=$(( (N + 19) / 20 ))

# --- redis-server and the tracker stand-in ---------------------------------------------------
port=$(start_redis "$dir") || { echo "bench-e2e.sh: could not start redis-server" >&2; exit 1; }

"$tracker_bin" --port 0 </dev/null >"$dir/tracker.out" 2>&1 &
tracker_pid=$!
for _ in $(seq 1 100); do
    grep -q '^listening on ' "$dir/tracker.out" && break
    sleep 0.05
done
tracker_base=$(sed -n 's/^listening on //p' "$dir/tracker.out")
[ -n "$tracker_base" ] || { echo "bench-e2e.sh: the tracker stand-in did not start" >&2; exit 1; }
endpoint="${tracker_base}counter/test/"
redis_pid=$(redis-cli -p "$port" info server | tr -d '\r' | awk -F: '/^process_id:/ { print $2 }')
echo "== redis-server on 127.0.0.1:$port, tracker stand-in at $tracker_base" >&2

# --- configurations (as tests/integration/support/pipeline.rs config_text) -------------------------------
# config FILE REDIS_URL|"" PUSHTO
config() {
    local redis=""
    # max_queue_length above N: the stage runs preload a whole queue on purpose.
    [ -n "$2" ] && redis="[redis]
url = $2
max_queue_length = $((N + DISPATCH_N + 1000000))
"
    cat >"$1" <<EOF
# bench-e2e.sh: generated configuration
$redis
[loglines]
state_dir = state

[logger_watch]
command = loglines watch
logfile = access.log
pushto = $3
servicename = repo.example.ac.uk
start_at = beginning

[worker_broker]
command = loglines broker
listento = loglines
fanout = pirus2
numprocs = 1

[worker_pirus2]
command = loglines worker
listento = pirus2
numprocs = 3
repository_plugin = $root/lua_plugins/irus.lua
endpoint_url = $endpoint
pauseonfail = 2
timeout = 5
connect_timeout = 2
success_queue = articlelog
other_queue = otherlog

[irus]
repository = repo.example.ac.uk

[logger_articlelogger]
command = loglines filelog
listento = articlelog
logfile = logs/articles.log

[logger_otherlogger]
command = loglines filelog
listento = otherlog
logfile = logs/other.log
EOF
}
config "$dir/redis.cfg" "redis://127.0.0.1:$port/0" loglines
# The dispatch runs preload a list of their own and move it under the workers' queue at once.
config "$dir/dispatch.cfg" "redis://127.0.0.1:$port/0" dispatch-preload
mkdir -p "$dir/embedded" "$dir/out"
config "$dir/embedded/loglines.cfg" "" loglines

# start NAME CONFIG ROLE SECTION [PROCESS-NUM]: starts a role process, sets $started.
declare -A pid_of=()
start() {
    local name=$1 cfg=$2 role=$3 section=$4 n=${5:-}
    local args=(--config "$cfg" "$role" --section "$section")
    [ -n "$n" ] && args+=(--process-num "$n")
    "$bin" "${args[@]}" </dev/null >>"$dir/out/$name.log" 2>&1 &
    started=$!
    pids+=("$started")
    pid_of[$name]=$started
}
# stop_all: SIGTERM every running role process and wait for it (they exit within 5 s).
stop_all() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    pid_of=()
}
# wait_for DESCRIPTION TIMEOUT COMMAND...: polls COMMAND (every 50 ms) until it succeeds.
wait_for() {
    local what=$1 limit=$2
    shift 2
    local end=$(( $(date +%s) + limit ))
    until "$@"; do
        if [ "$(date +%s)" -ge "$end" ]; then
            echo "bench-e2e.sh: timed out after ${limit}s waiting for $what; role outputs:" >&2
            tail -n 5 "$dir"/out/*.log >&2 || true
            exit 1
        fi
        sleep 0.05
    done
}
queue_holds() { [ "$(llen "$1")" -ge "$2" ]; }
alive_consumers() { [ "$(redis-cli -p "$port" --scan --pattern "$1:alive:*" | wc -l)" -ge "$2" ]; }
queues_hold() { [ $(( $(llen articlelog) + $(llen otherlog) )) -ge "$1" ]; }
filed() { [ $(( $(size "$1/logs/articles.log") + $(size "$1/logs/other.log") )) -ge "$log_bytes" ]; }
reset() {
    redis-cli -p "$port" flushall >/dev/null
    rm -rf "$dir/state" "$dir/logs"
}
# rss_of NAME...: "name peak" for each, sampled now (just before stopping).
declare -A peak=()
sample_rss() { local n; for n in "$@"; do peak[$n]=$(hwm "${pid_of[$n]}"); done; }
# cpu_of NAME...: CPU ticks the named role processes have used so far.
cpu_of() { local n t=0; for n in "$@"; do t=$(( t + $(cputicks "${pid_of[$n]}") )); done; echo "$t"; }
# us_per_line TICKS LINES: CPU microseconds per line.
us_per_line() { awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; }
# stage_end NAME...: records the CPU per line of the stage's processes and of redis-server.
declare -A stage_cpu=() stage_redis=()
stage_end() {
    stage_cpu[$1]=$(us_per_line "$(cpu_of "${@:2}")" "$N")
    stage_redis[$1]=$(us_per_line $(( $(cputicks "$redis_pid") - redis0 )) "$N")
}
limit=$(( N / 2000 + 60 ))  # seconds any one stage may take (500 lines/s is certainly broken)

# --- 1. the tracker ceiling -------------------------------------------------------------------
wrk_rps() {
    wrk -c1 -t1 -d5s "$tracker_base" | tee -a "$dir/wrk.out" | awk '/^Requests\/sec:/ { printf "%d", $2 }'
}
echo "== wrk -c1 -t1 -d5s $tracker_base (load $(load))" >&2
wrk1=$(wrk_rps)
echo "   $wrk1 requests/s" >&2

# --- 2a. the Redis topology, stage by stage ----------------------------------------------------
echo "== Redis topology, each stage alone (load $(load))" >&2
reset
redis0=$(cputicks "$redis_pid"); t0=$(now); start watch "$dir/redis.cfg" watch logger_watch
wait_for "the watcher to push $N lines" "$limit" queue_holds loglines "$N"
t1=$(now); sample_rss watch; stage_end watch watch; stop_all
stage_watch=$(rate "$N" "$(secs "$t0" "$t1")")

redis0=$(cputicks "$redis_pid"); t0=$(now); start broker "$dir/redis.cfg" broker worker_broker 0
wait_for "the broker to fan out $N lines" "$limit" queue_holds pirus2 "$N"
t1=$(now); sample_rss broker; stage_end broker broker; stop_all
stage_broker=$(rate "$N" "$(secs "$t0" "$t1")")

redis0=$(cputicks "$redis_pid"); t0=$(now)
for i in 0 1 2; do start "worker$i" "$dir/redis.cfg" worker worker_pirus2 "$i"; done
wait_for "3 workers to handle $N lines" "$limit" queues_hold "$N"
t1=$(now); sample_rss worker0 worker1 worker2; stage_end workers worker0 worker1 worker2; stop_all
stage_workers=$(rate "$N" "$(secs "$t0" "$t1")")
stage_workers_rps=$(rate "$downloads" "$(secs "$t0" "$t1")")

redis0=$(cputicks "$redis_pid"); t0=$(now)
start articlelog "$dir/redis.cfg" filelog logger_articlelogger 0
start otherlog "$dir/redis.cfg" filelog logger_otherlogger 0
wait_for "the file loggers to write $N lines" "$limit" filed "$dir"
t1=$(now); sample_rss articlelog otherlog; stage_end filelog articlelog otherlog; stop_all
stage_filelog=$(rate "$N" "$(secs "$t0" "$t1")")
declare -A stage_peak=()
for k in "${!peak[@]}"; do stage_peak[$k]=${peak[$k]}; done
echo "   watch $stage_watch, broker $stage_broker, 3 workers $stage_workers, 2 file loggers $stage_filelog lines/s" >&2

# --- 2b. the Redis topology, everything together -----------------------------------------------
echo "== Redis topology, end to end (load $(load))" >&2
reset
roles=(watch broker worker0 worker1 worker2 articlelog otherlog)
redis0=$(cputicks "$redis_pid"); t0=$(now)
for i in 0 1 2; do start "worker$i" "$dir/redis.cfg" worker worker_pirus2 "$i"; done
start articlelog "$dir/redis.cfg" filelog logger_articlelogger 0
start otherlog "$dir/redis.cfg" filelog logger_otherlogger 0
start broker "$dir/redis.cfg" broker worker_broker 0
start watch "$dir/redis.cfg" watch logger_watch
wait_for "$N lines end to end" "$limit" filed "$dir"
t1=$(now)
stage_end e2e "${roles[@]}"
e2e_secs=$(secs "$t0" "$t1")
e2e=$(rate "$N" "$e2e_secs")
articles=$(wc -l <"$dir/logs/articles.log")
others=$(wc -l <"$dir/logs/other.log")
[ "$articles" -eq "$downloads" ] && [ $((articles + others)) -eq "$N" ] || {
    echo "bench-e2e.sh: expected $downloads + $((N - downloads)) filed lines, got $articles + $others" >&2
    exit 1
}
echo "   $N lines in ${e2e_secs}s: $e2e lines/s" >&2
# Idle: everything drained; CPU of each process over 5 s.
sleep 1
declare -A ns0=() idle=() sw0=() idle_sw=()
for n in "${roles[@]}"; do ns0[$n]=$(cpu_ns "${pid_of[$n]}"); sw0[$n]=$(wakeups "${pid_of[$n]}"); done
sleep 5
for n in "${roles[@]}"; do
    idle[$n]=$(( $(cpu_ns "${pid_of[$n]}") - ${ns0[$n]} ))
    idle_sw[$n]=$(( $(wakeups "${pid_of[$n]}") - ${sw0[$n]} ))
done
sample_rss "${roles[@]}"
stop_all

# --- 3. tracker dispatch ------------------------------------------------------------------------
# dispatch_run PROCS: sends the preloaded downloads with PROCS worker processes; sets $drate to
# the requests per second (not a command substitution: the workers must stay in this shell, so
# that the clean-up on exit stops them).
dispatch_run() {
    local procs=$1 i t0 t1
    reset
    "$bin" --config "$dir/dispatch.cfg" push --section logger_watch <"$dir/downloads.log" >>"$dir/out/push.log" 2>&1
    [ "$(llen dispatch-preload)" -eq "$DISPATCH_N" ] || { echo "bench-e2e.sh: preloading failed" >&2; exit 1; }
    for ((i = 0; i < procs; i++)); do start "dworker$i" "$dir/dispatch.cfg" worker worker_pirus2 "$i"; done
    # Once every worker is up (plugin loaded, connected, waiting on its empty queue), the
    # preloaded list becomes their queue in one step (RENAME wakes blocked takers): the timing
    # is of the sending alone.
    wait_for "$procs workers to start" 30 alive_consumers pirus2 "$procs"
    t0=$(now)
    redis-cli -p "$port" rename dispatch-preload pirus2 >/dev/null
    wait_for "$procs workers to send $DISPATCH_N events" "$limit" queue_holds articlelog "$DISPATCH_N"
    t1=$(now)
    stop_all
    drate=$(rate "$DISPATCH_N" "$(secs "$t0" "$t1")")
}
# One sender's rate swings several-fold with what the other core is doing (a ping-pong on one
# core skips the cross-core wake-up), so one worker is measured DISPATCH_ROUNDS times, each
# between two wrk runs, and each round's ratio is to the mean of the wrk runs either side.
echo "== tracker dispatch: $DISPATCH_N downloads preloaded; 1 worker process x $DISPATCH_ROUNDS rounds between wrk runs, then 2 and 4 (load $(load))" >&2
# A fresh wrk run opens the rounds: the first one, minutes ago, was before the busy stages.
wrks=("$(wrk_rps)")
one=()
ratios=()
for ((r = 1; r <= DISPATCH_ROUNDS; r++)); do
    dispatch_run 1
    d=$drate
    w=$(wrk_rps)
    one+=("$d")
    ratios+=("$(awk -v d="$d" -v a="${wrks[-1]}" -v b="$w" 'BEGIN { printf "%d", 200 * d / (a + b) }')")
    echo "   round $r: 1 worker $d requests/s (${ratios[-1]}% of wrk's ${wrks[-1]} and $w)" >&2
    wrks+=("$w")
done
declare -A dispatch=()
for procs in 2 4; do
    dispatch_run "$procs"
    dispatch[$procs]=$drate
    echo "   numprocs $procs: ${dispatch[$procs]} requests/s" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)) }'; }
wrk_median=$(median "${wrks[@]}")

# --- 4. embedded ----------------------------------------------------------------------------------
echo "== embedded: loglines run --once (load $(load))" >&2
reset
t0=$(now)
# GNU time reports the CPU of the whole run (every thread) and its peak RSS (ru_maxrss).
/usr/bin/time -f '%U %S %M' -o "$dir/embedded.time" \
    "$bin" --config "$dir/embedded/loglines.cfg" run --once "$dir/access.log" --endpoint "$endpoint" \
    </dev/null >"$dir/out/embedded.log" 2>&1 &
emb_pid=$!
pids+=("$emb_pid")
emb_rc=0
wait "$emb_pid" || emb_rc=$?
t1=$(now)
pids=()
read -r emb_user emb_sys emb_peak < <(tail -n 1 "$dir/embedded.time")
emb_ticks=$(awk -v u="$emb_user" -v s="$emb_sys" -v hz="$hz" 'BEGIN { printf "%d", (u + s) * hz }')
[ "$emb_rc" -eq 0 ] || { echo "bench-e2e.sh: loglines run exited $emb_rc:" >&2; tail -n 5 "$dir/out/embedded.log" >&2; exit 1; }
filed "$dir/embedded" || { echo "bench-e2e.sh: loglines run did not file every line" >&2; exit 1; }
emb_secs=$(secs "$t0" "$t1")
emb=$(rate "$N" "$emb_secs")
echo "   $N lines in ${emb_secs}s: $emb lines/s; $(grep -o 'summary:.*' "$dir/out/embedded.log" || true)" >&2

# --- summary ---------------------------------------------------------------------------------------
kill -TERM "$tracker_pid" 2>/dev/null || true
wait "$tracker_pid" 2>/dev/null || true
tracker_pid=""
served=$(sed -n 's/^served \([0-9]*\) requests/\1/p' "$dir/tracker.out")
wrk_total=$(awk '/requests in/ { n += $1 } END { print n + 0 }' "$dir/wrk.out")
expected=$(( wrk_total + 3 * downloads + (DISPATCH_ROUNDS + 2) * DISPATCH_N ))

row "figure" "value" "target / note"
row "wrk -c1 -t1 (median of ${#wrks[@]} runs)" "$wrk_median" "requests/s, the ceiling of one connection; each run: ${wrks[*]}"
row "stage: watch alone" "$stage_watch" "lines/s"
row "stage: broker alone" "$stage_broker" "lines/s"
row "stage: 3 workers alone" "$stage_workers" "lines/s ($stage_workers_rps requests/s)"
row "stage: 2 file loggers alone" "$stage_filelog" "lines/s"
row "Redis topology end to end" "$e2e" "lines/s (target >= 50000)"
for st in watch broker workers filelog e2e; do
    row "  CPU per line, $st: roles + redis-server" "${stage_cpu[$st]} + ${stage_redis[$st]}" "us"
done
row "  (2 idle cores would allow)" "$(awk -v a="${stage_cpu[e2e]}" -v b="${stage_redis[e2e]}" 'BEGIN { printf "%d", 2e6 / (a + b) }')" "lines/s end to end, from the CPU per line"
for n in "${roles[@]}"; do
    row "  $n peak RSS (stage / end to end)" "$(mib "${stage_peak[$n]}") / $(mib "${peak[$n]}")" "MiB (target <= 30)"
done
for n in "${roles[@]}"; do
    row "  $n CPU while idle, 5 s" "$(awk -v ns="${idle[$n]}" 'BEGIN { printf "%.2f", ns / 1e6 }')" "ms, ${idle_sw[$n]} wake-ups (target: no CPU while idle)"
done
for ((r = 0; r < DISPATCH_ROUNDS; r++)); do
    row "dispatch, 1 worker process, round $((r + 1))" "${one[r]}" "requests/s, ${ratios[r]}% of the wrk runs either side (${wrks[r]}, ${wrks[r + 1]})"
done
row "dispatch, 1 worker process, median ratio" "$(median "${ratios[@]}")%" "of wrk -c1 in the same rounds (target >= 80%)"
for procs in 2 4; do
    row "dispatch, $procs worker processes" "${dispatch[$procs]}" \
        "requests/s, $(awk -v a="${dispatch[$procs]}" -v b="$wrk_median" 'BEGIN { printf "%d%%", 100 * a / b }') of wrk -c1's median"
done
row "embedded run --once end to end" "$emb" "lines/s (target >= 150000)"
emb_cpu=$(us_per_line "$emb_ticks" "$N")
row "  embedded CPU per line" "$emb_cpu" "us; 2 idle cores would allow $(awk -v c="$emb_cpu" 'BEGIN { printf "%d", 2e6 / c }') lines/s"
row "embedded peak RSS (ru_maxrss)" "$(mib "$emb_peak")" "MiB (target <= 50)"
row "embedded / Redis topology" "$(awk -v a="$emb" -v b="$e2e" 'BEGIN { printf "%.2f", a / b }')" "x"
# wrk does not count a request still unanswered when its time is up: up to one per wrk run
# (the first one, before stage 2, and those around the dispatch rounds).
check="ok"
[ "$served" -ge "$expected" ] && [ "$served" -le $((expected + ${#wrks[@]} + 1)) ] || check="MISMATCH"
row "tracker requests served" "$served" "$check: expected $expected (wrk $wrk_total, 3 x $downloads, $((DISPATCH_ROUNDS + 2)) x $DISPATCH_N)"

echo
echo "== loglines end-to-end benchmark: N=$N ($downloads downloads), $(nproc) cores, load at the end $(load)"
printf '%s\n' "${summary[@]}"
