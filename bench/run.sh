#!/usr/bin/env bash
# Benchmark POST /services/{id}/par (RFC 9126) on SQLite and/or PostgreSQL with wrk, and the peer,
# node-oidc-provider (bench/peer), with the same client, body and wrk script; prints our/peer ratios.
#
#   bash bench/run.sh [sqlite|postgresql|redis|peer|all]      (default: all)
#
# redis: PostgreSQL for services and clients, pushed requests in Redis (PAR_PUSHED_REQUEST_STORE=redis,
# PAR_REDIS_URL from BENCH_REDIS_URL, default redis://127.0.0.1:6379/14; its keys expire by themselves;
# Redis's own CPU is part of other_cpu_s). all: sqlite, postgresql, redis and peer.
#
# For each database: a fresh store, `par-server migrate`, a service and a client seeded with the CLI,
# `par-server serve --workers 1` on a free loopback port, a warm-up, then RUNS wrk runs
# of `wrk -t1 -c32 -d20s --latency -s bench/par.lua`. Prints each RESULT line and the per-metric
# median, with the server's CPU time and peak RSS. Raw outputs go to bench/out/<timestamp>/.
# Each RESULT line is extended with the CPU seconds used during that run by the server, wrk, the
# PostgreSQL processes alive at its end (postgres_cpu_s), the PostgreSQL backends that exited during it
# (postgres_exited_cpu_s, may include other databases'), everything else on the machine (other_cpu_s,
# by difference: concurrent test suites), the machine's busy % and the load average.
# ROUNDS=N (default 1) repeats the whole sequence of targets N times, each round in its own directory
# (round-1/, ...), and ends with RATIO_MEDIAN lines: the median over the rounds of each round's ratios. This
# VM's speed drifts by tens of percent within minutes, and the peer (which uses more than one core) drifts
# more than par-server, so ratios taken minutes apart within a round and repeated are the robust figure.
# Tunables (env): THREADS=1 CONNECTIONS=32 DURATION=20 WARMUP=5 RUNS=3 WORKERS=1 (par-server's uvicorn
# workers) FILL=0 (live pushed requests stored before the runs, bench/fill.py) SCENARIO=push or flow
# (bench/flow.lua: the backend API push, resolve and consume) RSS_SAMPLE_SECONDS=5 PG_DB=par_server_bench PAR_SERVER;
# PAR_* settings (e.g. PAR_DB_POOL_SIZE) reach the server.
# PIN=1 compares servers per core: the server under test (par-server or the peer) runs on SERVER_CPUS
# (default 0), wrk on LOAD_CPUS (default 1), and the running PostgreSQL and Redis processes are moved to
# LOAD_CPUS for the run (new PostgreSQL backends inherit it) and given every CPU back at the end.
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
if [[ "$PIN" == 1 ]]; then
  command -v taskset >/dev/null 2>&1 || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 1; }
  ON_SERVER_CPUS=(taskset -c "$SERVER_CPUS")
  ON_LOAD_CPUS=(taskset -c "$LOAD_CPUS")
fi

pin_databases() {  # pin_databases CPUS: every PostgreSQL and Redis process (and thread) onto CPUS
  local pid
  for pid in $(pgrep -x postgres; pgrep -x redis-server); do
    taskset -a -cp "$1" "$pid" >/dev/null 2>&1 || true
  done
}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-1}
WORKERS=${WORKERS:-1}  # uvicorn worker processes of par-server (the peer is one Node process)
FILL=${FILL:-0}  # live pushed requests put in the store before the runs (bench/fill.py)
RSS_SAMPLE_SECONDS=${RSS_SAMPLE_SECONDS:-5}
# push: the RFC 9126 endpoint (bench/par.lua); flow: the backend API's push, resolve and consume
# (bench/flow.lua; par-server only, the peer has no such API).
SCENARIO=${SCENARIO:-push}
case "$SCENARIO" in
  push) SCRIPT=$BENCH_DIR/par.lua ;;
  flow) SCRIPT=$BENCH_DIR/flow.lua ;;
  *) echo "run.sh: SCENARIO must be push or flow" >&2; exit 1 ;;
esac
PG_HOST=127.0.0.1
PG_USER=postgres
PG_DB=${PG_DB:-par_server_bench}
CLK_TCK=$(getconf CLK_TCK)

die() { echo "run.sh: $*" >&2; exit 1; }

target=${1:-all}
case "$target" in
  sqlite) databases=(sqlite) ;;
  postgresql) databases=(postgresql) ;;
  redis) databases=(redis) ;;
  peer) databases=(peer) ;;
  all) databases=(sqlite postgresql redis peer) ;;
  *) die "usage: bash bench/run.sh [sqlite|postgresql|redis|peer|all]" ;;
esac
declare -A SUMMARIES=()  # target -> its MEDIAN line
if [[ " ${databases[*]} " == *" peer "* ]]; then
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || die "the peer needs Node.js >= 20 and npm"
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
if [[ " ${databases[*]} " == *" postgresql "* || " ${databases[*]} " == *" redis "* ]]; then
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
  if [[ "$PIN" == 1 ]]; then pin_databases "0-$(( $(nproc --all) - 1 ))"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ "$PIN" == 1 ]]; then
  pin_databases "$LOAD_CPUS"
  echo "pinned: the server under test on CPUs $SERVER_CPUS; wrk, PostgreSQL and Redis on CPUs $LOAD_CPUS"
fi

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
  echo "$SERVER_PID" $(pgrep -P "$SERVER_PID" 2>/dev/null || true)
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
  local db=$1 url=$2 log=$3
  local wrk_cmd=(wrk "-t$THREADS" "-c$CONNECTIONS" "-d${DURATION}s" --latency -s "$SCRIPT" "$url")
  echo "$db: warm-up ${WARMUP}s"
  run_wrk "$OUT/$db-warmup.txt" "-t$THREADS" "-c$CONNECTIONS" "-d${WARMUP}s" --latency -s "$SCRIPT" "$url" \
    || die "$db: warm-up wrk failed (see $OUT/$db-warmup.txt)"

  local run results=() srv_cpu=() wrk_cpu=() pg_cpu=() pg_exited_cpu=() other_cpu=() busy=() load_during=()
  local s0 s1 p1 px m0 m1 w0 w1 line wrk_ticks
  for run in $(seq 1 "$RUNS"); do
    p1=0; px=0
    if [[ "$db" == postgresql || "$db" == redis ]]; then snapshot_postgres; fi
    s0=$(server_ticks); m0=$(machine_ticks)
    children_cpu_ms; w0=$CHILD_MS
    sample_rss "$OUT/$db-run$run-rss.txt" &
    local sampler=$!
    run_wrk "$OUT/$db-run$run.txt" "${wrk_cmd[@]:1}" || die "$db: wrk run $run failed (see $OUT/$db-run$run.txt)"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    s1=$(server_ticks); m1=$(machine_ticks); children_cpu_ms; w1=$CHILD_MS
    if [[ "$db" == postgresql || "$db" == redis ]]; then
      p1=$(postgres_live_ticks_since_snapshot); px=$(postgres_exited_ticks_since_snapshot)
    fi
    load_during+=("$(loadavg)")
    kill -0 "$SERVER_PID" 2>/dev/null || die "$db: the server died during run $run (see $log)"
    line=$(grep '^RESULT ' "$OUT/$db-run$run.txt") || die "$db: no RESULT line in $OUT/$db-run$run.txt"
    grep '^NON201 ' "$OUT/$db-run$run.txt" || true
    srv_cpu+=("$(ticks_to_s $(( s1 - s0 )))")
    wrk_cpu+=("$(awk -v ms=$(( w1 - w0 )) 'BEGIN { printf "%.2f", ms / 1000 }')")
    pg_cpu+=("$(ticks_to_s "$p1")"); pg_exited_cpu+=("$(ticks_to_s "$px")")
    wrk_ticks=$(awk -v c="${wrk_cpu[-1]}" -v hz="$CLK_TCK" 'BEGIN { printf "%d", c * hz }')
    # shellcheck disable=SC2086  # "busy total" pairs
    set -- $m0 $m1
    busy+=("$(awk -v b=$(( $3 - $1 )) -v t=$(( $4 - $2 )) 'BEGIN { printf "%.0f", 100 * b / t }')")
    # Everything else the 2 cores did meanwhile (other processes, kernel), by difference.
    other_cpu+=("$(ticks_to_s $(( $3 - $1 - (s1 - s0) - wrk_ticks - p1 - px )))")
    # CPU per request: the server's CPU over the requests wrk completed (the per-core comparison's figure).
    line="$line server_cpu_ms_per_request=$(awk -v c="${srv_cpu[-1]}" -v line="$line" 'BEGIN {
      match(line, /requests=[0-9]+/); n = substr(line, RSTART + 9, RLENGTH - 9); printf "%.3f", (n > 0 ? 1000 * c / n : 0) }')"
    line="$line server_cpu_s=${srv_cpu[-1]} wrk_cpu_s=${wrk_cpu[-1]} postgres_cpu_s=${pg_cpu[-1]}"
    line="$line postgres_exited_cpu_s=${pg_exited_cpu[-1]}"
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

  local workers=$WORKERS
  [[ "$db" == peer ]] && workers=1
  local metric values summary="MEDIAN db=$db scenario=$SCENARIO runs=$RUNS connections=$CONNECTIONS workers=$workers fill=$FILL"
  for metric in rps p50_ms p90_ms p99_ms non201 errors; do
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
  summary="$summary postgres_exited_cpu_s_per_run=$(median "${pg_exited_cpu[@]}") other_cpu_s_per_run=$(median "${other_cpu[@]}")"
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

bench_peer() {
  # node-oidc-provider (bench/peer), PAR on, the same client_secret_basic client, body and wrk script.
  local port url log="$OUT/peer-server.log"
  echo "=== peer: oidc-provider $(cd "$BENCH_DIR/peer" && node -p 'require("./package.json").dependencies["oidc-provider"]')  (load average before: $(loadavg)) ==="
  [[ -d "$BENCH_DIR/peer/node_modules" ]] || (cd "$BENCH_DIR/peer" && npm ci --no-audit --no-fund --silent)
  port=$(free_port)
  url="http://127.0.0.1:$port"
  export CLIENT_ID=bench-client CLIENT_SECRET
  CLIENT_SECRET=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')
  (cd "$BENCH_DIR/peer" && exec ${ON_SERVER_CPUS[@]+"${ON_SERVER_CPUS[@]}"} node server.mjs --port "$port" --client-id "$CLIENT_ID" \
    --client-secret "$CLIENT_SECRET" --redirect-uri https://client.example.org/cb) > "$log" 2>&1 &
  SERVER_PID=$!
  wait_ready peer "$url/.well-known/openid-configuration" "$log"
  (cd "$BENCH_DIR/peer" && node -p 'require("oidc-provider/package.json").version') > "$OUT/peer-version.txt"
  probe peer "$url/request" "$CLIENT_ID" "$CLIENT_SECRET"
  PAR_PATH=/request measure peer "$url" "$log"
  echo "=== peer done (load average after: $(loadavg)) ==="
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

bench_database() {
  local db=$1 port url service_json client_json service_id client_id client_secret
  local log="$OUT/$db-server.log"
  echo "=== $db  (load average before: $(loadavg)) ==="
  uptime > "$OUT/$db-uptime-before.txt"

  export PAR_DATA_DIR="$TMP/data-$db"
  PAR_ADMIN_TOKEN=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')
  PAR_PEPPER=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')
  export PAR_ADMIN_TOKEN PAR_PEPPER
  port=$(free_port)
  url="http://127.0.0.1:$port"
  export PAR_PUBLIC_BASE_URL="$url"
  prepare_store "$db"

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

{
  echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "command: bash bench/run.sh $target  (wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $RUNS runs, ${WARMUP}s warm-up, WORKERS=$WORKERS FILL=$FILL SCENARIO=$SCENARIO)"
  echo "nproc: $(nproc)"
  lscpu | grep 'Model name' || true
  grep MemTotal /proc/meminfo
  "$PY" -c 'import sqlite3, sys; print("python", sys.version.split()[0], "sqlite", sqlite3.sqlite_version)'
  wrk --version 2>&1 | head -1 || true
  if command -v psql >/dev/null 2>&1; then psql --version; fi
  echo "uptime: $(uptime)"
} | tee "$OUT/machine.txt"

for round in $(seq 1 "$ROUNDS"); do
  if (( ROUNDS > 1 )); then
    OUT="$OUT_BASE/round-$round"
    mkdir -p "$OUT"
    echo "=== round $round of $ROUNDS ==="
  fi
  SUMMARIES=()
  for db in "${databases[@]}"; do
    if [[ "$db" == peer && "$SCENARIO" != push ]]; then
      echo "=== peer skipped: SCENARIO=$SCENARIO is par-server's backend API ==="
    elif [[ "$db" == peer ]]; then
      bench_peer
    else
      bench_database "$db"
    fi
  done
  ratios
done
if (( ROUNDS > 1 )); then median_ratios; fi
echo "raw outputs: $OUT_BASE"
