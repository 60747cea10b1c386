#!/usr/bin/env bash
# The cost of tracing per push: par-server on PostgreSQL, RFC 9126 pushes by wrk (bench/par.lua), with
# tracing off, on (every request sampled, its spans exported over OTLP/HTTP to a local sink that answers
# 200), and on with 1% of the requests sampled; the three alternate, ROUNDS times, each on a fresh server.
#
#   bash bench/tracing.sh
#
# Pinned as bench/README.md describes: the server on SERVER_CPUS (0), wrk, the sink and PostgreSQL where
# they are, on LOAD_CPUS (1). Prints one line per run: config, req/s, p99, the server's CPU per push (µs,
# user + system of every thread: the span processor's export thread included), then the median per config.
# The sink's own CPU is not the server's: it only stands in for a collector.
#
# Tunables (env): ROUNDS=3 DURATION=12 WARMUP=4 CONNECTIONS=32 SERVER_CPUS=0 LOAD_CPUS=1 PORT=18210
# SINK_PORT=18211 PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/par_server_tracing_bench,
# created if missing and truncated per server).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/bench
PAR_SERVER=${PAR_SERVER:-$ROOT/.venv/bin/par-server}
PY=${PY:-$ROOT/.venv/bin/python}
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-12} WARMUP=${WARMUP:-4} CONNECTIONS=${CONNECTIONS:-32}
SERVER_CPUS=${SERVER_CPUS:-0} LOAD_CPUS=${LOAD_CPUS:-1} PORT=${PORT:-18210} SINK_PORT=${SINK_PORT:-18211}
PG_URL=${PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/par_server_tracing_bench}
OUT=$BENCH_DIR/out/tracing-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
TICKS=$(getconf CLK_TCK)

die() { echo "tracing.sh: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is not installed (apt-get install -y wrk)"
"$PY" -c 'import opentelemetry.sdk' 2>/dev/null || die "OpenTelemetry is not installed: uv sync --extra tracing"

SINK_PID="" SERVER_PID=""
cleanup() {
  [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [[ -n "$SINK_PID" ]] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
  return 0
}
trap cleanup EXIT

# The OTLP/HTTP sink: reads each export and answers 200 with an empty ExportTraceServiceResponse.
taskset -c "$LOAD_CPUS" "$PY" - "$SINK_PORT" > "$OUT/sink.log" 2>&1 <<'EOF' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    exports = 0

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Sink.exports += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
EOF
SINK_PID=$!

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run_config() {  # run_config NAME [VAR=VALUE...]: a fresh server with the given environment, a warm-up, one run
  local name=$1; shift
  local url="http://127.0.0.1:$PORT" log="$OUT/$name-$round-server.log" service_json client_json result before after
  "$PY" - "$PG_URL" <<'EOF'
import sys
import psycopg
from sqlalchemy.engine import make_url
url = make_url(sys.argv[1]).set(drivername="postgresql")
with psycopg.connect(url.set(database="postgres").render_as_string(hide_password=False), autocommit=True) as admin:
    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone():
        admin.execute(f'CREATE DATABASE "{url.database}"')
EOF
  export PAR_DATABASE_URL=$PG_URL PAR_PUBLIC_BASE_URL=$url PAR_DATA_DIR=$OUT/data
  export PAR_ADMIN_TOKEN=bench-admin-token-0123456789abcdefghijklmnop PAR_PEPPER=bench-pepper-0123456789abcdefghijklmnopq
  export PAR_RATE_LIMIT_PER_ADDRESS=1000000000/minute PAR_RATE_LIMIT_PER_CLIENT=1000000000/minute
  (cd "$ROOT" && "$PAR_SERVER" migrate) > "$OUT/migrate.log" 2>&1 || die "migrate failed (see $OUT/migrate.log)"
  "$PY" -c 'import sys, psycopg; from sqlalchemy.engine import make_url
c = psycopg.connect(make_url(sys.argv[1]).set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True)
c.execute("TRUNCATE pushed_request, client, service_access_token, service, replay_entry, rate_limit_counter CASCADE")' "$PG_URL"
  service_json=$(cd "$ROOT" && "$PAR_SERVER" service create --name bench --scope openid 2>>"$OUT/seed.log")
  export SERVICE_ID CLIENT_ID CLIENT_SECRET PAR_PATH=""
  SERVICE_ID=$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["apiKey"])' <<<"$service_json")
  client_json=$(cd "$ROOT" && "$PAR_SERVER" client create --service "$SERVICE_ID" \
    --redirect-uri https://client.example.org/cb 2>>"$OUT/seed.log")
  CLIENT_ID=$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["clientId"])' <<<"$client_json")
  CLIENT_SECRET=$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["clientSecret"])' <<<"$client_json")

  (cd "$ROOT" && exec env "$@" taskset -c "$SERVER_CPUS" "$PAR_SERVER" serve --host 127.0.0.1 --port "$PORT") \
    > "$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fs "$url/healthz" >/dev/null || die "$name: the server did not start (see $log)"

  taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$BENCH_DIR/par.lua" "$url" > /dev/null
  before=$(cpu_ticks "$SERVER_PID")
  result=$(taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$BENCH_DIR/par.lua" "$url" \
    | tee "$OUT/$name-$round-wrk.txt" | grep '^RESULT')
  after=$(cpu_ticks "$SERVER_PID")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

  awk -v name="$name" -v round="$round" -v ticks=$((after - before)) -v hz="$TICKS" -v line="$result" 'BEGIN {
    n = split(line, f, " "); for (i = 2; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
    printf "RUN config=%s round=%s rps=%s p99_ms=%s non201=%s cpu_us_per_push=%.1f\n", name, round, v["rps"],
      v["p99_ms"], v["non201"], ticks / hz * 1e6 / v["requests"] }' | tee -a "$OUT/runs.txt"
}

OTLP=(OTEL_TRACES_EXPORTER=otlp "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT")
for round in $(seq "$ROUNDS"); do
  run_config off
  run_config on "${OTLP[@]}"
  run_config on-1pct "${OTLP[@]}" OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01
done

for name in off on on-1pct; do
  awk -v name="$name" '$2 == "config=" name {
    for (i = 3; i <= NF; i++) { split($i, kv, "="); values[kv[1]] = values[kv[1]] " " kv[2] } }
    END {
      printf "MEDIAN config=%s", name
      split("rps p99_ms cpu_us_per_push", keys, " ")
      for (k = 1; k <= 3; k++) {
        n = split(values[keys[k]], xs, " "); asort(xs)
        printf " %s=%s (%s..%s)", keys[k], (n % 2 ? xs[(n + 1) / 2] : (xs[n / 2] + xs[n / 2 + 1]) / 2), xs[1], xs[n]
      }
      print "" }' "$OUT/runs.txt"
done | tee "$OUT/medians.txt"
