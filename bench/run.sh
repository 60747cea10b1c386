#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Benchmark POST /services/{id}/par (RFC 9126) on SQLite and/or PostgreSQL with wrk, and the peer,
# node-oidc-provider (bench/peer), with the same client, body and wrk script; prints our/peer ratios.
#
#   bash bench/run.sh [targets|sqlite|postgresql|redis|peer|peer-redis|api-push|flow|all]   (default: targets)
#
# targets: the performance targets in one command. Pinned, then unpinned (MODES="pinned unpinned"), it
# measures par-server's RFC 9126 push on PostgreSQL (postgresql), then the backend API's push alone on
# PostgreSQL (api-push), the peer in memory (peer) and with its Redis adapter (peer-redis), par-server with
# the Redis store (redis) and on SQLite (sqlite), and the backend API's push, resolve and consume on
# PostgreSQL (flow); then prints a SUMMARY table and one TARGET line per target (measured value, target,
# met or NOT MET). Resolve and consume are compared with the calls per second recorded in
# bench/baseline.env. Its defaults: DURATION=12 WARMUP=4 RUNS=3 (about 12 minutes on 2 idle cores).
#
# peer-redis: the peer with PEER_STORE=redis (bench/peer/redis_adapter.mjs), its pushed requests in
# BENCH_REDIS_URL. api-push and flow: par-server on PostgreSQL with those scenarios.
# redis: PostgreSQL for services and clients, pushed requests in Redis (PAR_PUSHED_REQUEST_STORE=redis,
# PAR_REDIS_URL from BENCH_REDIS_URL, default redis://127.0.0.1:6379/14; its keys expire by themselves;
# Redis's own CPU is redis_cpu_s). all: sqlite, postgresql, redis and peer.
#
# For each database: a fresh store, `par-server migrate`, a service and a client seeded with the CLI,
# `par-server serve --workers 1` on a free loopback port, a warm-up, then RUNS wrk runs
# of `wrk -t1 -c32 -d20s --latency -s bench/par.lua`. Prints each RESULT line and the per-metric
# median, with the server's CPU time and peak RSS. Raw outputs go to bench/out/<timestamp>/.
# Each RESULT line is extended with the CPU seconds used during that run by the server, wrk, the
# PostgreSQL processes alive at its end (postgres_cpu_s), the PostgreSQL backends that exited during it
# (postgres_exited_cpu_s, may include other databases'), the Redis servers (redis_cpu_s), everything else on the machine (other_cpu_s,
# by difference: concurrent test suites), the machine's busy % and the load average.
# ROUNDS=N (default 1) repeats the whole sequence of targets N times, each round in its own directory
# (round-1/, ...), and ends with RATIO_MEDIAN lines: the median over the rounds of each round's ratios. This
# VM's speed drifts by tens of percent within minutes, and the peer (which uses more than one core) drifts
# more than par-server, so ratios taken minutes apart within a round and repeated are the robust figure.
# Tunables (env): THREADS=1 CONNECTIONS=32 DURATION=20 WARMUP=5 RUNS=3 WORKERS=1 (par-server's uvicorn
# workers) FILL=0 (live pushed requests stored before the runs, bench/fill.py) SCENARIO=push, flow
# (bench/flow.lua: the backend API push, resolve and consume) or api-push (flow.lua's pushes alone)
# RSS_SAMPLE_SECONDS=5 PG_DB=par_server_bench PAR_SERVER; PAR_* settings (e.g. PAR_DB_POOL_SIZE) reach the
# server. SCENARIO applies to the single targets; `targets` chooses each measurement's own.
# PIN=1 compares servers per core: the server under test (par-server or the peer) runs on SERVER_CPUS
# (default 0), wrk on LOAD_CPUS (default 1), and the running PostgreSQL and Redis processes are moved to
# LOAD_CPUS for the run (new PostgreSQL backends inherit it) and given every CPU back at the end.
# `targets` ignores PIN: its MODES say which of pinned and unpinned to run, in that order.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
PAR_SERVER=${PAR_SERVER:-$ROOT/.venv/bin/par-server}
PY=${PY:-$ROOT/.venv/bin/python}
PIN=${PIN:-0}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
ON_SERVER_CPUS=()
ON_LOAD_CPUS=()
PINNED_EVER=0  # whether the databases were moved, so cleanup gives them every CPU back

pin_databases() {  # pin_databases CPUS: every PostgreSQL and Redis process (and thread) onto CPUS
  local pid
  for pid in $(pgrep -x postgres; pgrep -x redis-server); do
    taskset -a -cp "$1" "$pid" >/dev/null 2>&1 || true
  done
}

set_pinning() {  # set_pinning 1|0: the server, wrk and the databases on their CPUs, or all back on every CPU
  if [[ "$1" == 1 ]]; then
    command -v taskset >/dev/null 2>&1 || { echo "run.sh: pinning needs taskset (util-linux)" >&2; exit 1; }
    ON_SERVER_CPUS=(taskset -c "$SERVER_CPUS")
    ON_LOAD_CPUS=(taskset -c "$LOAD_CPUS")
    PINNED_EVER=1
    pin_databases "$LOAD_CPUS"
    echo "pinned: the server under test on CPUs $SERVER_CPUS; wrk, PostgreSQL and Redis on CPUs $LOAD_CPUS"
  else
    ON_SERVER_CPUS=()
    ON_LOAD_CPUS=()
    if [[ "$PINNED_EVER" == 1 ]]; then pin_databases "0-$(( $(nproc --all) - 1 ))"; fi
  fi
}
target=${1:-targets}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-32}
if [[ "$target" == targets ]]; then  # 14 measurements: shorter runs so the whole finishes in about 12 minutes
  DURATION=${DURATION:-12}
  WARMUP=${WARMUP:-4}
else
  DURATION=${DURATION:-20}
  WARMUP=${WARMUP:-5}
fi
RUNS=${RUNS:-3}
MODES=${MODES:-pinned unpinned}
ROUNDS=${ROUNDS:-1}
WORKERS=${WORKERS:-1}  # uvicorn worker processes of par-server (the peer is one Node process)
FILL=${FILL:-0}  # live pushed requests put in the store before the runs (bench/fill.py)
RSS_SAMPLE_SECONDS=${RSS_SAMPLE_SECONDS:-5}
# push: the RFC 9126 endpoint (bench/par.lua); flow: the backend API's push, resolve and consume
# (bench/flow.lua; par-server only, the peer has no such API); api-push: the backend API's push alone.
use_scenario() {  # use_scenario NAME: sets SCENARIO and the wrk script (SCRIPT, FLOW_STEPS) for it
  SCENARIO=$1
  case "$SCENARIO" in
    push) SCRIPT=$BENCH_DIR/par.lua; export FLOW_STEPS="" ;;
    flow) SCRIPT=$BENCH_DIR/flow.lua; export FLOW_STEPS="" ;;
    api-push) SCRIPT=$BENCH_DIR/flow.lua; export FLOW_STEPS=push ;;
    *) echo "run.sh: SCENARIO must be push, flow or api-push" >&2; exit 1 ;;
  esac
}
use_scenario "${SCENARIO:-push}"
PG_HOST=127.0.0.1
PG_USER=postgres
PG_DB=${PG_DB:-par_server_bench}
CLK_TCK=$(getconf CLK_TCK)

die() { echo "run.sh: $*" >&2; exit 1; }

# Each measurement's name -> "store scenario": the store is what prepare_store sets up (or, for the peer,
# memory or redis), the scenario the wrk script (use_scenario).
declare -A PLAN=(
  [sqlite]="sqlite push" [postgresql]="postgresql push" [redis]="redis push"
  [api-push]="postgresql api-push" [flow]="postgresql flow"
  [peer]="memory push" [peer-redis]="redis push"
)
case "$target" in
  sqlite | postgresql | redis | peer | peer-redis | api-push | flow) databases=("$target") ;;
  all) databases=(sqlite postgresql redis peer) ;;
  # The peers between the RFC push on PostgreSQL and the Redis store, the ratios' terms minutes apart at most.
  targets) databases=(postgresql api-push peer peer-redis redis sqlite flow) ;;
  *) die "usage: bash bench/run.sh [targets|sqlite|postgresql|redis|peer|peer-redis|api-push|flow|all]" ;;
esac
if [[ "$target" == targets ]]; then
  (( ROUNDS == 1 )) || die "targets runs each mode once (ROUNDS=1); run the command again to repeat it"
  for mode in $MODES; do
    [[ "$mode" == pinned || "$mode" == unpinned ]] || die "MODES holds pinned and/or unpinned, not '$mode'"
  done
  if [[ " $MODES " == *" pinned "* ]] && (( $(nproc) < 2 )); then die "pinned needs 2 CPUs (MODES=unpinned runs without)"; fi
  BASELINE_FILE=$BENCH_DIR/baseline.env
  [[ -f "$BASELINE_FILE" ]] || die "$BASELINE_FILE (resolve and consume calls per second before) is missing"
  # shellcheck source=baseline.env
  . "$BASELINE_FILE"
fi
declare -A SUMMARIES=()  # measurement -> its MEDIAN line
declare -A MODE_SUMMARIES=()  # "mode measurement" -> its MEDIAN line (targets)
if [[ " ${databases[*]} " == *" peer"* ]]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then die "the peer needs Node.js >= 20 and npm"; fi
fi

command -v wrk >/dev/null 2>&1 \
  || die "wrk is not installed; install it with: apt-get update && apt-get install -y wrk"
command -v curl >/dev/null 2>&1 || die "curl is not installed (apt-get install -y curl)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"
if [[ "$PAR_SERVER" == "$ROOT/.venv/bin/par-server" && ! -x "$PAR_SERVER" ]]; then
  # A fresh clone: install the project into .venv as scripts/demo does, so one command runs the benchmark.
  # shellcheck source=../scripts/_venv.sh
  (cd "$ROOT" && . scripts/_venv.sh && ensure_venv --no-default-groups --inexact) || die "installing the project into $ROOT/.venv failed"
fi
[[ -x "$PAR_SERVER" ]] || die "$PAR_SERVER not found; install the project in $ROOT/.venv (scripts/test or uv sync)"
[[ -x "$PY" ]] || die "$PY not found"
if [[ " ${databases[*]} " == *" postgresql "* || " ${databases[*]} " == *" redis "* || "$target" == targets ]]; then
  command -v psql >/dev/null 2>&1 || die "psql is not installed (apt-get install -y postgresql-client)"
fi

OUT_BASE="$ROOT/bench/out/$(date -u +%Y%m%dT%H%M%SZ)"
OUT=$OUT_BASE  # each round's own directory when ROUNDS > 1
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/par-bench.XXXXXX)
SERVER_PID=""
WRK_PID=""
PG_CREATED=""

stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do  # up to 10 s for a graceful shutdown, then SIGKILL
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$WRK_PID" ]]; then kill -TERM "$WRK_PID" 2>/dev/null || true; wait "$WRK_PID" 2>/dev/null || true; fi
  stop_server
  if [[ -n "$PG_CREATED" ]]; then
    timeout 30 psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qAt -v ON_ERROR_STOP=1 \
      -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$TMP"
  if [[ "$PINNED_EVER" == 1 ]]; then pin_databases "0-$(( $(nproc --all) - 1 ))"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ "$PIN" == 1 && "$target" != targets ]]; then set_pinning 1; fi

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

json_field() {  # json_field FIELD < json
  "$PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

pid_cpu_ticks() {  # pid_cpu_ticks PID [children]: utime+stime (or cutime+cstime of reaped children), in ticks; 0 if gone
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }  # drop "pid (comm) ", comm may hold spaces
  # shellcheck disable=SC2086  # split the remaining fields on purpose
  set -- $stat "${2:-}"
  if [[ "${!#}" == children ]]; then
    echo $(( ${14} + ${15} ))  # fields 16 and 17 of the full line
  else
    echo $(( ${12} + ${13} ))  # fields 14 and 15 of the full line
  fi
}

declare -A PG_TICKS=()  # pid -> ticks at the start of a run
PG_REAPED=0
postmaster_pid() { pgrep -o -x postgres 2>/dev/null || echo 0; }
snapshot_postgres() {
  local pid
  PG_TICKS=()
  for pid in $(pgrep -x postgres 2>/dev/null || true); do PG_TICKS[$pid]=$(pid_cpu_ticks "$pid"); done
  PG_REAPED=$(pid_cpu_ticks "$(postmaster_pid)" children)
}
postgres_live_ticks_since_snapshot() {
  # CPU since snapshot_postgres of the postgres processes alive now (new ones in full): the bench's
  # backends and the background processes (WAL writer, checkpointer...). Client backends of other
  # databases (concurrent test suites) are left out.
  local total=0 pid now other
  other=" $(timeout 10 psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qAt -c \
    "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname IS DISTINCT FROM '$PG_DB'" \
    2>/dev/null || true) "
  for pid in $(pgrep -x postgres 2>/dev/null || true); do
    [[ "$other" == *" $pid "* ]] && continue
    now=$(pid_cpu_ticks "$pid")
    if (( now >= ${PG_TICKS[$pid]:-0} )); then total=$(( total + now - ${PG_TICKS[$pid]:-0} )); fi
  done
  echo "$total"
}
postgres_exited_ticks_since_snapshot() {
  # CPU of the postgres backends that exited since snapshot_postgres (reaped by the postmaster): the
  # bench's pool churns its overflow connections, but this also holds other databases' backends.
  echo $(( $(pid_cpu_ticks "$(postmaster_pid)" children) - PG_REAPED ))
}

machine_ticks() {  # "busy total" jiffies summed over all CPUs, from /proc/stat
  local _cpu user nice system idle iowait irq softirq steal _rest
  read -r _cpu user nice system idle iowait irq softirq steal _rest < /proc/stat
  echo "$(( user + nice + system + irq + softirq + steal )) $(( user + nice + system + idle + iowait + irq + softirq + steal ))"
}

sample_rss() {  # sample_rss FILE: "seconds rss_kb" lines until killed
  local started=$SECONDS kb pid
  while true; do
    kb=0
    for pid in $(server_pids); do
      kb=$(( kb + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0) ))
    done
    echo "$(( SECONDS - started )) $kb" >> "$1"
    sleep "$RSS_SAMPLE_SECONDS"
  done
}

server_pids() {  # the server and its worker processes (uvicorn --workers N forks them)
  # shellcheck disable=SC2046  # one word per pid
  echo "$SERVER_PID" $(pgrep -P "$SERVER_PID" 2>/dev/null || true)
}

redis_ticks() {  # CPU ticks of the running Redis servers (what the Redis stores cost it)
  local total=0 pid
  for pid in $(pgrep -x redis-server 2>/dev/null || true); do total=$(( total + $(pid_cpu_ticks "$pid") )); done
  echo "$total"
}

server_ticks() {  # CPU ticks of the server and its workers
  local total=0 pid
  for pid in $(server_pids); do total=$(( total + $(pid_cpu_ticks "$pid") )); done
  echo "$total"
}

ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

CHILD_MS=0
children_cpu_ms() {  # sets CHILD_MS: CPU of this shell's reaped children so far (`times`, 2nd line), in ms
  # No command substitution here: `times` in a subshell would report the subshell's children.
  local user sys
  times > "$TMP/times"
  { read -r _ _; read -r user sys; } < "$TMP/times"  # e.g. "0m1.234s 0m0.056s"
  CHILD_MS=$(awk -v u="$user" -v s="$sys" 'function ms(t,  m) { m = t; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", t); sub(/s$/, "", t); return (m * 60 + t) * 1000 }
    BEGIN { printf "%d", ms(u) + ms(s) }')
}

run_wrk() {  # run_wrk OUTFILE WRK-ARGS...: in the background and waited for, so a signal is handled at once
  local out=$1; shift
  timeout $(( DURATION + WARMUP + 30 )) ${ON_LOAD_CPUS[@]+"${ON_LOAD_CPUS[@]}"} wrk "$@" > "$out" 2>&1 &
  WRK_PID=$!
  local status=0
  wait "$WRK_PID" || status=$?
  WRK_PID=""
  return "$status"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

prepare_store() {  # sets PAR_DATABASE_URL (and, for redis, the Redis store of pushed requests) for $1
  unset PAR_PUSHED_REQUEST_STORE PAR_REDIS_URL
  case "$1" in
    redis)
      prepare_store postgresql
      export PAR_PUSHED_REQUEST_STORE=redis PAR_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/14}"
      echo "redis: pushed requests in $PAR_REDIS_URL" | tee "$OUT/redis-settings.txt"
      ;;
    sqlite)
      mkdir -p "$TMP/sqlite"
      rm -f "$TMP/sqlite/par.db" "$TMP/sqlite/par.db-wal" "$TMP/sqlite/par.db-shm"
      export PAR_DATABASE_URL="sqlite+aiosqlite:///$TMP/sqlite/par.db"
      ;;
    postgresql)
      PG_CREATED=1
      timeout 30 psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qAt -v ON_ERROR_STOP=1 \
        -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" \
        -c "CREATE DATABASE $PG_DB" \
        || die "cannot (re)create database $PG_DB on $PG_HOST as $PG_USER"
      timeout 10 psql -h "$PG_HOST" -U "$PG_USER" -d "$PG_DB" -qAt \
        -c "SELECT 'postgresql ' || current_setting('server_version') || ' synchronous_commit=' || current_setting('synchronous_commit') || ' fsync=' || current_setting('fsync')" \
        | tee "$OUT/postgresql-settings.txt"
      export PAR_DATABASE_URL="postgresql+psycopg://$PG_USER@$PG_HOST:5432/$PG_DB"
      ;;
  esac
}

median() {  # median of the numbers given as arguments
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

field() {  # field NAME LINE -> the value of NAME=value in a RESULT line
  local name=$1 line=$2 word
  for word in $line; do
    if [[ "$word" == "$name="* ]]; then echo "${word#*=}"; return; fi
  done
  echo "NA"
}

measure() {  # measure NAME URL SERVER_LOG: warm-up, RUNS wrk runs against the server $SERVER_PID, medians
  # (STORE and SERVER_KIND, par-server or peer, say what is measured)
  local db=$1 url=$2 log=$3
  local wrk_cmd=(wrk "-t$THREADS" "-c$CONNECTIONS" "-d${DURATION}s" --latency -s "$SCRIPT" "$url")
  echo "$db: warm-up ${WARMUP}s"
  run_wrk "$OUT/$db-warmup.txt" "-t$THREADS" "-c$CONNECTIONS" "-d${WARMUP}s" --latency -s "$SCRIPT" "$url" \
    || die "$db: warm-up wrk failed (see $OUT/$db-warmup.txt)"

  local run results=() srv_cpu=() wrk_cpu=() pg_cpu=() pg_exited_cpu=() redis_cpu=() other_cpu=() busy=() load_during=()
  local s0 s1 p1 px r0 r1 m0 m1 w0 w1 line wrk_ticks uses_postgres=0
  # The Redis store keeps services and clients in PostgreSQL; the peer with Redis uses no PostgreSQL.
  [[ "$SERVER_KIND" == par-server && ( "$STORE" == postgresql || "$STORE" == redis ) ]] && uses_postgres=1
  for run in $(seq 1 "$RUNS"); do
    p1=0; px=0
    if (( uses_postgres )); then snapshot_postgres; fi
    r0=$(redis_ticks)
    s0=$(server_ticks); m0=$(machine_ticks)
    children_cpu_ms; w0=$CHILD_MS
    sample_rss "$OUT/$db-run$run-rss.txt" &
    local sampler=$!
    run_wrk "$OUT/$db-run$run.txt" "${wrk_cmd[@]:1}" || die "$db: wrk run $run failed (see $OUT/$db-run$run.txt)"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    s1=$(server_ticks); m1=$(machine_ticks); children_cpu_ms; w1=$CHILD_MS; r1=$(redis_ticks)
    if (( uses_postgres )); then
      p1=$(postgres_live_ticks_since_snapshot); px=$(postgres_exited_ticks_since_snapshot)
    fi
    load_during+=("$(loadavg)")
    kill -0 "$SERVER_PID" 2>/dev/null || die "$db: the server died during run $run (see $log)"
    line=$(grep '^RESULT ' "$OUT/$db-run$run.txt") || die "$db: no RESULT line in $OUT/$db-run$run.txt"
    grep '^NON201 ' "$OUT/$db-run$run.txt" || true
    srv_cpu+=("$(ticks_to_s $(( s1 - s0 )))")
    wrk_cpu+=("$(awk -v ms=$(( w1 - w0 )) 'BEGIN { printf "%.2f", ms / 1000 }')")
    pg_cpu+=("$(ticks_to_s "$p1")"); pg_exited_cpu+=("$(ticks_to_s "$px")"); redis_cpu+=("$(ticks_to_s $(( r1 - r0 )))")
    wrk_ticks=$(awk -v c="${wrk_cpu[-1]}" -v hz="$CLK_TCK" 'BEGIN { printf "%d", c * hz }')
    # shellcheck disable=SC2086  # "busy total" pairs
    set -- $m0 $m1
    busy+=("$(awk -v b=$(( $3 - $1 )) -v t=$(( $4 - $2 )) 'BEGIN { printf "%.0f", 100 * b / t }')")
    # Everything else the 2 cores did meanwhile (other processes, kernel), by difference.
    other_cpu+=("$(ticks_to_s $(( $3 - $1 - (s1 - s0) - wrk_ticks - p1 - px - (r1 - r0) )))")
    # CPU per request: the server's CPU over the requests wrk completed (the per-core comparison's figure).
    line="$line server_cpu_ms_per_request=$(awk -v c="${srv_cpu[-1]}" -v line="$line" 'BEGIN {
      match(line, /requests=[0-9]+/); n = substr(line, RSTART + 9, RLENGTH - 9); printf "%.3f", (n > 0 ? 1000 * c / n : 0) }')"
    line="$line server_cpu_s=${srv_cpu[-1]} wrk_cpu_s=${wrk_cpu[-1]} postgres_cpu_s=${pg_cpu[-1]}"
    line="$line postgres_exited_cpu_s=${pg_exited_cpu[-1]} redis_cpu_s=${redis_cpu[-1]}"
    line="$line other_cpu_s=${other_cpu[-1]} machine_busy_pct=${busy[-1]} load=${load_during[-1]// /,}"
    # RSS over the run (summed over the server's processes), sampled every RSS_SAMPLE_SECONDS.
    line="$line $(awk 'NR == 1 { first = $2 } { last = $2; if ($2 > max) max = $2 }
      END { printf "rss_first_mb=%.1f rss_last_mb=%.1f rss_max_mb=%.1f", first / 1024, last / 1024, max / 1024 }' \
      "$OUT/$db-run$run-rss.txt")"
    results+=("$line")
    echo "$db run $run: $line" | tee -a "$OUT/results.txt"
  done

  local hwm cpu_total
  # Peak RSS summed over the server's processes (each worker's own peak).
  hwm=$(for pid in $(server_pids); do cat "/proc/$pid/status" 2>/dev/null; done \
    | awk '/^VmHWM:/ { kb += $2 } END { printf "%.1f", kb / 1024 }')
  cpu_total=$(ticks_to_s "$(server_ticks)")
  stop_server

  local workers=$WORKERS metrics=(rps p50_ms p90_ms p99_ms non201 errors server_cpu_ms_per_request) kind
  [[ "$SERVER_KIND" == peer ]] && workers=1
  # Each call's own rate within the mix, when the wrk script counts them (bench/flow.lua).
  for kind in push resolve consume; do
    [[ "$(field "${kind}_per_s" "${results[0]}")" != NA ]] && metrics+=("${kind}_per_s")
  done
  local metric values summary="MEDIAN db=$db server=$SERVER_KIND store=$STORE scenario=$SCENARIO runs=$RUNS connections=$CONNECTIONS workers=$workers fill=$FILL"
  for metric in "${metrics[@]}"; do
    values=()
    for line in "${results[@]}"; do values+=("$(field "$metric" "$line")"); done
    summary="$summary $metric=$(median "${values[@]}")"
  done
  local non201_total=0 errors_total=0
  for line in "${results[@]}"; do
    non201_total=$(( non201_total + $(field non201 "$line") ))
    errors_total=$(( errors_total + $(field errors "$line") ))
  done
  summary="$summary non201_total=$non201_total errors_total=$errors_total"
  summary="$summary server_cpu_s_per_run=$(median "${srv_cpu[@]}") wrk_cpu_s_per_run=$(median "${wrk_cpu[@]}")"
  summary="$summary postgres_cpu_s_per_run=$(median "${pg_cpu[@]}")"
  summary="$summary postgres_exited_cpu_s_per_run=$(median "${pg_exited_cpu[@]}") redis_cpu_s_per_run=$(median "${redis_cpu[@]}")"
  summary="$summary other_cpu_s_per_run=$(median "${other_cpu[@]}")"
  summary="$summary machine_busy_pct=$(median "${busy[@]}") load_during=${load_during[*]// /,}"
  summary="$summary server_cpu_total_s=$cpu_total server_peak_rss_mb=$hwm"
  echo "$summary" | tee -a "$OUT/results.txt"
  SUMMARIES[$db]=$summary

  local warnings
  warnings=$(warning_lines "$log" | wc -l)
  echo "$db: server log $log: $(wc -l < "$log") lines, $warnings warnings or errors" | tee -a "$OUT/results.txt"
  if (( warnings > 0 )); then
    warning_lines "$log" | sed -E 's/"ts":"[^"]*",//' | sort | uniq -c | sort -rn \
      | head -5 | sed "s/^/$db:   /" | tee -a "$OUT/results.txt"
  fi
}

warning_lines() {  # warning_lines LOG: par-server's lines are JSON and say their level (uvicorn's all name the
  # logger "uvicorn.error"); other lines (the peer's) are matched by word.
  { grep -E '^\{' "$1" | grep -E '"level":"(warning|error|critical)"'
    grep -vE '^\{' "$1" | grep -iE 'warn|error|traceback|exception|unhandled'; } || true
}

wait_ready() {  # wait_ready NAME URL LOG: until URL answers, or die
  local name=$1 url=$2 log=$3
  for _ in $(seq 1 300); do  # up to 30 s
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; die "$name: the server exited during start-up"; }
    if curl -fsS --max-time 1 -o /dev/null "$url" 2>/dev/null; then return; fi
    sleep 0.1
  done
  cat "$log" >&2
  die "$name: $url did not answer within 30 s"
}

probe() {  # probe NAME PAR_URL CLIENT_ID CLIENT_SECRET: one push by hand, so a misconfiguration fails loudly
  local name=$1 par_url=$2 client_id=$3 client_secret=$4 status
  status=$(curl -sS --max-time 10 -o "$OUT/$name-probe.json" -w '%{http_code}' -u "$client_id:$client_secret" \
    --data-urlencode response_type=code --data-urlencode "client_id=$client_id" \
    --data-urlencode redirect_uri=https://client.example.org/cb --data-urlencode scope=openid \
    --data-urlencode state=probe --data-urlencode code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM \
    --data-urlencode code_challenge_method=S256 "$par_url")
  [[ "$status" == 201 ]] || { cat "$OUT/$name-probe.json" >&2; echo >&2; die "$name: probe push answered $status"; }
}

bench_peer() {  # bench_peer NAME STORE (memory or redis)
  # node-oidc-provider (bench/peer), PAR on, the same client_secret_basic client, body and wrk script.
  local name=$1 port url log="$OUT/$1-server.log"
  STORE=$2 SERVER_KIND=peer
  echo "=== $name: oidc-provider $(cd "$BENCH_DIR/peer" && node -p 'require("./package.json").dependencies["oidc-provider"]'), store $STORE  (load average before: $(loadavg)) ==="
  if [[ ! -d "$BENCH_DIR/peer/node_modules/oidc-provider" || ! -d "$BENCH_DIR/peer/node_modules/ioredis" ]]; then
    (cd "$BENCH_DIR/peer" && npm ci --no-audit --no-fund --silent) || die "npm ci in $BENCH_DIR/peer failed"
  fi
  export PEER_STORE=$STORE PEER_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/14}"
  [[ "$STORE" == redis ]] && echo "$name: pushed requests in $PEER_REDIS_URL" | tee "$OUT/$name-redis-settings.txt"
  port=$(free_port)
  url="http://127.0.0.1:$port"
  export CLIENT_ID=bench-client CLIENT_SECRET
  CLIENT_SECRET=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')
  (cd "$BENCH_DIR/peer" && exec ${ON_SERVER_CPUS[@]+"${ON_SERVER_CPUS[@]}"} node server.mjs --port "$port" --client-id "$CLIENT_ID" \
    --client-secret "$CLIENT_SECRET" --redirect-uri https://client.example.org/cb) > "$log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$name" "$url/.well-known/openid-configuration" "$log"
  (cd "$BENCH_DIR/peer" && node -p 'require("oidc-provider/package.json").version') > "$OUT/peer-version.txt"
  probe "$name" "$url/request" "$CLIENT_ID" "$CLIENT_SECRET"
  PAR_PATH=/request measure "$name" "$url" "$log"
  echo "=== $name done (load average after: $(loadavg)) ==="
}

ratios() {  # ours/peer for each database measured in this run
  local db peer=${SUMMARIES[peer]:-}
  [[ -n "$peer" ]] || return 0
  for db in sqlite postgresql redis; do
    [[ -n "${SUMMARIES[$db]:-}" ]] || continue
    awk -v ours_rps="$(field rps "${SUMMARIES[$db]}")" -v peer_rps="$(field rps "$peer")" \
        -v ours_p99="$(field p99_ms "${SUMMARIES[$db]}")" -v peer_p99="$(field p99_ms "$peer")" -v db="$db" \
      'BEGIN { printf "RATIO db=%s rps_ours_over_peer=%.2f p99_ours_over_peer=%.2f (ours %.1f req/s p99 %.1f ms; peer %.1f req/s p99 %.1f ms)\n", db, ours_rps / peer_rps, ours_p99 / peer_p99, ours_rps, ours_p99, peer_rps, peer_p99 }' \
      | tee -a "$OUT/results.txt" | tee -a "$OUT_BASE/ratios.txt"
  done
}

median_ratios() {  # RATIO_MEDIAN per database: the median over the rounds of each round's RATIO line
  local db values_rps values_p99 line
  [[ -f "$OUT_BASE/ratios.txt" ]] || return 0
  for db in sqlite postgresql redis; do
    values_rps=(); values_p99=()
    while read -r line; do
      values_rps+=("$(field rps_ours_over_peer "$line")"); values_p99+=("$(field p99_ours_over_peer "$line")")
    done < <(grep "^RATIO db=$db " "$OUT_BASE/ratios.txt")
    (( ${#values_rps[@]} > 0 )) || continue
    echo "RATIO_MEDIAN db=$db rounds=${#values_rps[@]} rps_ours_over_peer=$(median "${values_rps[@]}")" \
      "p99_ours_over_peer=$(median "${values_p99[@]}") (per round: ${values_rps[*]})" | tee -a "$OUT_BASE/results.txt"
  done
}

bench_database() {  # bench_database NAME STORE (sqlite, postgresql or redis)
  local db=$1 port url service_json client_json service_id client_id client_secret
  local log="$OUT/$db-server.log"
  STORE=$2 SERVER_KIND=par-server
  echo "=== $db: par-server, store $STORE, scenario $SCENARIO  (load average before: $(loadavg)) ==="
  uptime > "$OUT/$db-uptime-before.txt"

  export PAR_DATA_DIR="$TMP/data-$db"
  PAR_ADMIN_TOKEN=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')
  PAR_PEPPER=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')
  export PAR_ADMIN_TOKEN PAR_PEPPER
  port=$(free_port)
  url="http://127.0.0.1:$port"
  export PAR_PUBLIC_BASE_URL="$url"
  prepare_store "$STORE"

  (cd "$ROOT" && timeout 120 "$PAR_SERVER" migrate) > "$OUT/$db-migrate.log" 2>&1 \
    || { cat "$OUT/$db-migrate.log" >&2; die "$db: migrate failed"; }
  service_json=$(cd "$ROOT" && timeout 60 "$PAR_SERVER" service create --name bench --scope openid 2>>"$OUT/$db-seed.log") \
    || die "$db: service create failed (see $OUT/$db-seed.log)"
  service_id=$(json_field apiKey <<<"$service_json")
  export SERVICE_TOKEN
  SERVICE_TOKEN=$(json_field serviceAccessToken <<<"$service_json")
  client_json=$(cd "$ROOT" && timeout 60 "$PAR_SERVER" client create --service "$service_id" \
    --redirect-uri https://client.example.org/cb 2>>"$OUT/$db-seed.log") \
    || die "$db: client create failed (see $OUT/$db-seed.log)"
  client_id=$(json_field clientId <<<"$client_json")
  client_secret=$(json_field clientSecret <<<"$client_json")
  export SERVICE_ID=$service_id CLIENT_ID=$client_id CLIENT_SECRET=$client_secret PAR_PATH=""
  if (( FILL > 0 )); then
    (cd "$ROOT" && timeout 1800 "$PY" bench/fill.py "$FILL" "$service_id" "$client_id") 2>&1 | tee -a "$OUT/$db-fill.log" \
      || die "$db: filling the store failed"
  fi
  # The limiter runs and counts every push, but wrk from one address must not reach its budgets.
  export PAR_RATE_LIMIT_PER_ADDRESS=1000000000/minute PAR_RATE_LIMIT_PER_CLIENT=1000000000/minute

  (cd "$ROOT" && exec ${ON_SERVER_CPUS[@]+"${ON_SERVER_CPUS[@]}"} "$PAR_SERVER" serve --host 127.0.0.1 --port "$port" \
    --workers "$WORKERS") \
    > "$log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$db" "$url/healthz" "$log"

  probe "$db" "$url/services/$service_id/par" "$client_id" "$client_secret"
  measure "$db" "$url" "$log"
  uptime > "$OUT/$db-uptime-after.txt"
  echo "=== $db done (load average after: $(loadavg)) ==="
}

run_measurement() {  # run_measurement NAME [plan]: NAME's store from PLAN, and with "plan" its scenario too
  # (api-push and flow always get theirs; the others take SCENARIO unless "plan")
  local name=$1 store scenario
  read -r store scenario <<<"${PLAN[$name]}"
  if [[ "${2:-}" == plan || "$name" == api-push || "$name" == flow ]]; then use_scenario "$scenario"; fi
  case "$name" in
    peer | peer-redis)
      if [[ "$SCENARIO" != push ]]; then
        echo "=== $name skipped: SCENARIO=$SCENARIO is par-server's backend API ==="
      else
        bench_peer "$name" "$store"
      fi
      ;;
    *) bench_database "$name" "$store" ;;
  esac
}

ratio() {  # ratio A B: A/B with two decimals, NA if either is missing or B is 0
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || a == "" || b == "" || b + 0 == 0) print "NA"; else printf "%.2f\n", a / b }'
}

MET=0
CHECKED=0
target_line() {  # target_line MODE LABEL VALUE OP BOUND [DETAIL [VERDICT]]: one TARGET line, counted in MET/CHECKED
  local mode=$1 label=$2 value=$3 op=$4 bound=$5 detail=${6:-} verdict=${7:-}
  if [[ -z "$verdict" ]]; then
    verdict=$(awk -v v="$value" -v b="$bound" -v op="$op" 'BEGIN {
      if (v == "NA" || v == "") print "NOT MEASURED"
      else if (op == "<=") print (v + 0 <= b + 0 ? "met" : "NOT MET")
      else print (v + 0 >= b + 0 ? "met" : "NOT MET") }')
    CHECKED=$(( CHECKED + 1 ))
    [[ "$verdict" == met ]] && MET=$(( MET + 1 ))
  fi
  printf 'TARGET %-10s %-50s %9s   target %s %-6s %-13s %s\n' "[$mode]" "$label" "$value" "$op" "$bound" "$verdict" "$detail"
}

print_summary() {  # the SUMMARY table: one row per mode and measurement (targets)
  local mode name line
  printf 'SUMMARY %-10s %-11s %-10s %-10s %-8s %9s %8s %8s %11s %9s %9s %9s %7s %6s\n' mode measurement server store scenario \
    'req/s' 'p50 ms' 'p99 ms' 'cpu ms/req' 'push/s' 'resolve/s' 'consume/s' non-2xx errors
  for mode in $MODES; do
    for name in "${databases[@]}"; do
      line=${MODE_SUMMARIES["$mode $name"]:-}
      [[ -n "$line" ]] || continue
      printf 'SUMMARY %-10s %-11s %-10s %-10s %-8s %9s %8s %8s %11s %9s %9s %9s %7s %6s\n' "$mode" "$name" \
        "$(field server "$line")" "$(field store "$line")" "$(field scenario "$line")" "$(field rps "$line")" \
        "$(field p50_ms "$line")" "$(field p99_ms "$line")" "$(field server_cpu_ms_per_request "$line")" \
        "$(field push_per_s "$line")" "$(field resolve_per_s "$line")" "$(field consume_per_s "$line")" \
        "$(field non201_total "$line")" "$(field errors_total "$line")"
    done
  done
}

print_targets() {  # one TARGET line per target and mode (targets)
  local mode pg api peer peer_redis redis sqlite flow r verdict
  for mode in $MODES; do
    pg=${MODE_SUMMARIES["$mode postgresql"]:-}; api=${MODE_SUMMARIES["$mode api-push"]:-}
    peer=${MODE_SUMMARIES["$mode peer"]:-}; peer_redis=${MODE_SUMMARIES["$mode peer-redis"]:-}
    redis=${MODE_SUMMARIES["$mode redis"]:-}; sqlite=${MODE_SUMMARIES["$mode sqlite"]:-}
    flow=${MODE_SUMMARIES["$mode flow"]:-}
    target_line "$mode" "PostgreSQL: CPU per push (ms)" "$(field server_cpu_ms_per_request "$pg")" "<=" 0.12
    target_line "$mode" "PostgreSQL: req/s over the peer in memory's" "$(ratio "$(field rps "$pg")" "$(field rps "$peer")")" \
      ">=" 1.5 "($(field rps "$pg") / $(field rps "$peer") req/s)"
    target_line "$mode" "PostgreSQL: req/s over the peer with Redis's" "$(ratio "$(field rps "$pg")" "$(field rps "$peer_redis")")" \
      ">=" 2.0 "($(field rps "$pg") / $(field rps "$peer_redis") req/s)"
    target_line "$mode" "PostgreSQL: p99 over the peer in memory's" "$(ratio "$(field p99_ms "$pg")" "$(field p99_ms "$peer")")" \
      "<=" 1.0 "($(field p99_ms "$pg") / $(field p99_ms "$peer") ms)"
    target_line "$mode" "PostgreSQL: p99 over the peer with Redis's" "$(ratio "$(field p99_ms "$pg")" "$(field p99_ms "$peer_redis")")" \
      "<=" 1.0 "($(field p99_ms "$pg") / $(field p99_ms "$peer_redis") ms)"
    target_line "$mode" "Redis store: req/s over the peer with Redis's" "$(ratio "$(field rps "$redis")" "$(field rps "$peer_redis")")" \
      ">=" 2.0 "($(field rps "$redis") / $(field rps "$peer_redis") req/s)"
    target_line "$mode" "SQLite: req/s over the peer in memory's" "$(ratio "$(field rps "$sqlite")" "$(field rps "$peer")")" \
      ">=" 1.0 "($(field rps "$sqlite") / $(field rps "$peer") req/s)"
    target_line "$mode" "backend API push: req/s over the RFC push's (PG)" "$(ratio "$(field rps "$api")" "$(field rps "$pg")")" \
      ">=" 0.9 "($(field rps "$api") / $(field rps "$pg") req/s)"
    # The baseline was measured pinned: an unpinned figure is shown against it but not judged.
    verdict=""
    [[ "$mode" == pinned ]] || verdict="not judged (baseline pinned)"
    for r in resolve consume; do
      target_line "$mode" "flow: $r calls/s over the baseline's" \
        "$(ratio "$(field "${r}_per_s" "$flow")" "$(baseline_per_s "$r")")" ">=" 3.0 \
        "($(field "${r}_per_s" "$flow") / $(baseline_per_s "$r") calls/s, baseline at $BASELINE_COMMIT)" "$verdict"
    done
  done
  echo "TARGETS met: $MET of $CHECKED judged"
}

baseline_per_s() {  # baseline_per_s resolve|consume: the calls per second recorded in bench/baseline.env
  if [[ "$1" == resolve ]]; then echo "$BASELINE_RESOLVE_PER_S"; else echo "$BASELINE_CONSUME_PER_S"; fi
}

{
  echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  if [[ "$target" == targets ]]; then
    echo "command: bash bench/run.sh targets  (modes: $MODES; wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $RUNS runs, ${WARMUP}s warm-up, WORKERS=$WORKERS FILL=$FILL)"
  else
    echo "command: bash bench/run.sh $target  (wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $RUNS runs, ${WARMUP}s warm-up, WORKERS=$WORKERS FILL=$FILL SCENARIO=$SCENARIO PIN=$PIN)"
  fi
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nproc: $(nproc)"
  lscpu | grep 'Model name' || true
  grep MemTotal /proc/meminfo
  "$PY" -c 'import sqlite3, sys; print("python", sys.version.split()[0], "sqlite", sqlite3.sqlite_version)'
  wrk --version 2>&1 | head -1 || true
  if command -v psql >/dev/null 2>&1; then psql --version; fi
  echo "uptime: $(uptime)"
} | tee "$OUT/machine.txt"

if [[ "$target" == targets ]]; then
  for mode in $MODES; do
    OUT="$OUT_BASE/$mode"
    mkdir -p "$OUT"
    echo "=== $mode ==="
    if [[ "$mode" == pinned ]]; then set_pinning 1; else set_pinning 0; fi
    SUMMARIES=()
    for db in "${databases[@]}"; do
      run_measurement "$db" plan
      MODE_SUMMARIES["$mode $db"]=${SUMMARIES[$db]:-}
    done
  done
  set_pinning 0
  echo
  print_summary | tee "$OUT_BASE/summary.txt"
  echo
  print_targets | tee "$OUT_BASE/targets.txt"
else
  for round in $(seq 1 "$ROUNDS"); do
    if (( ROUNDS > 1 )); then
      OUT="$OUT_BASE/round-$round"
      mkdir -p "$OUT"
      echo "=== round $round of $ROUNDS ==="
    fi
    SUMMARIES=()
    for db in "${databases[@]}"; do run_measurement "$db"; done
    ratios
  done
  if (( ROUNDS > 1 )); then median_ratios; fi
fi
echo "raw outputs: $OUT_BASE"
