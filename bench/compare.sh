#!/usr/bin/env bash
# Side-by-side latency/throughput benchmark of allowed read calls: (a) directly against the
# shipped demo MCP upstream, (b) through Portcullis, (c) through ContextForge 1.1.0 in front
# of the same upstream. Every process runs on loopback; each client (a plain httpx client,
# bench/httpx_client.py, and the official TypeScript SDK via the MCP Inspector CLI's --load
# mode) measures all three targets in the same run, in both protocol eras, at concurrency 1
# and $CONCURRENCY. Prints a Markdown table, the gateways' idle and peak RSS, and
# `portcullis audit verify` over Portcullis's store.
#
# The two clients count concurrency differently: httpx runs C clients, each with its own
# keep-alive connection (and, in the initialize era, its own session); the Inspector runs
# one client (one session) with at most C calls in flight. Compare rows of one client only.
# "Added" is the target's figure minus the direct figure of the same client, era and
# concurrency in the same run. "calls ≥35 ms" is counted by the httpx client only.
#
#   bench/setup.sh            # once: installs the clients and ContextForge outside the repo
#   bench/compare.sh          # CALLS=2000 per row
#   CALLS=300 bench/compare.sh
#   STORE=postgres bench/compare.sh
#
# Knobs (environment):
#   PORTCULLIS_BIN  the binary (default: $CARGO_TARGET_DIR/release/portcullis, else
#                   ./target/release/portcullis under the repo root); it also serves the
#                   demo upstream (`portcullis demo-upstream --http`)
#   CALLS           calls per row (default 2000); WARMUP calls before each httpx row (200),
#                   TS_WARMUP calls in a separate Inspector run before each TS row (50)
#   CONCURRENCY     the concurrent level (default 16); concurrency 1 is always run
#   CLIENTS         "httpx ts" (default); ERAS "initialize 2026" (default)
#   TARGETS         "direct portcullis contextforge" (default)
#   STORE           sqlite (default: Portcullis's embedded defaults in a temp data dir) or
#                   postgres (a scratch database on PG_URL, migrated by `portcullis migrate`
#                   as its owner, served as `portcullis_app`, dropped at the end)
#   PG_URL          superuser URL for STORE=postgres (postgres://postgres@127.0.0.1:5432/postgres)
#   CF_WORKERS, CF_CACHE_TYPE   see bench/contextforge.sh
#   RUN_TIMEOUT     seconds one client run may take before it is stopped (default 900)
#   KEEP=1          keep the temp dir (logs, data, results.jsonl)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BENCH_HOME=${BENCH_HOME:-$HOME/.cache/portcullis-bench}
export BENCH_HOME
PY=$BENCH_HOME/venv/bin/python
INSPECTOR=$BENCH_HOME/node/node_modules/.bin/mcp-inspector
PORTCULLIS_BIN=${PORTCULLIS_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis}
CALLS=${CALLS:-2000}
WARMUP=${WARMUP:-200}
CONCURRENCY=${CONCURRENCY:-16}
CLIENTS=${CLIENTS:-httpx ts}
ERAS=${ERAS:-initialize 2026}
TARGETS=${TARGETS:-direct portcullis contextforge}
STORE=${STORE:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
TS_WARMUP=${TS_WARMUP:-50}

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

[[ -x $PORTCULLIS_BIN ]] || die "no binary at $PORTCULLIS_BIN (set PORTCULLIS_BIN)"
[[ -x $PY ]] || die "run bench/setup.sh first (no venv at $BENCH_HOME/venv)"
[[ " $CLIENTS " != *" ts "* || -x $INSPECTOR ]] || die "run bench/setup.sh first (no MCP Inspector)"
case $STORE in sqlite | postgres) ;; *) die "STORE must be sqlite or postgres" ;; esac
PORTCULLIS_BIN=$(cd "$(dirname "$PORTCULLIS_BIN")" && pwd)/$(basename "$PORTCULLIS_BIN")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")
UP_PID='' PC_PID='' CF_PID='' PG_DB=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [[ -n ${CHILD:-} ]] && kill "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
  [[ -n $PC_PID ]] && kill "$PC_PID" 2>/dev/null
  [[ -n $UP_PID ]] && kill "$UP_PID" 2>/dev/null
  # contextforge.sh started it in its own process group (a pid file in its state dir).
  [[ -d $WORK/contextforge ]] && "$HERE/contextforge.sh" stop "$WORK/contextforge" 2>/dev/null
  [[ -n $PC_PID ]] && wait "$PC_PID" 2>/dev/null
  [[ -n $UP_PID ]] && wait "$UP_PID" 2>/dev/null
  [[ -n $PG_DB ]] && psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
  if [[ ${KEEP:-0} == 1 ]]; then echo "# kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_line FILE PREFIX PID: print the rest of the first line of FILE starting with PREFIX.
wait_line() {
  local file=$1 prefix=$2 pid=$3 line
  for _ in $(seq 600); do
    line=$(grep -m1 -F -- "$prefix" "$file" 2>/dev/null || true)
    if [[ -n $line ]]; then
      line=${line#*"$prefix"}
      echo "${line//[[:space:]]/}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$file" "${file%.out}.err" >&2 2>/dev/null; die "process $pid ended before printing '$prefix'"; }
    sleep 0.1
  done
  die "timed out waiting for '$prefix' in $file"
}

status_kib() { # status_kib PID FIELD -> KiB (0 if gone)
  awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

group_kib() { # group_kib PGID FIELD -> KiB summed over the process group
  local sum=0 p
  for p in $(pgrep -g "$1" 2>/dev/null); do sum=$((sum + $(status_kib "$p" "$2"))); done
  echo "$sum"
}

group_pss_kib() { # group_pss_kib PGID -> proportional set size summed (shared pages split)
  local sum=0 p v
  for p in $(pgrep -g "$1" 2>/dev/null); do
    v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# --- the upstream -------------------------------------------------------------------------
"$PORTCULLIS_BIN" demo-upstream --http 127.0.0.1:0 >"$WORK/upstream.out" 2>"$WORK/upstream.err" &
UP_PID=$!
UP_URL="http://127.0.0.1:$(wait_line "$WORK/upstream.out" "PORT=" "$UP_PID")/mcp"
log "demo upstream: $UP_URL"

# --- Portcullis -----------------------------------------------------------------------------
PC_ENV=(
  "PORTCULLIS_DATA__DIR=$WORK/portcullis"
  "PORTCULLIS_SERVER__LISTEN=127.0.0.1:0"
  # The per-agent rate limit would refuse a benchmark; ContextForge's is switched off too.
  "PORTCULLIS_AUTH__RATE_LIMIT_PER_MINUTE=1000000000"
  "PORTCULLIS_AUTH__RATE_LIMIT_BURST=1000000"
  "PORTCULLIS_LOG__FILTER=warn"
  # The benchmark's upstream listens on loopback.
  'PORTCULLIS_EGRESS__ALLOW_PRIVATE=["127.0.0.1/32"]'
)
if [[ $STORE == postgres ]]; then
  PG_DB=pc_bench_cmp_$$
  psql -q -v ON_ERROR_STOP=1 "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_DB" -c "CREATE DATABASE $PG_DB" >/dev/null \
    || die "cannot create a scratch database on $PG_URL"
  PG_OWNER_URL="${PG_URL%/*}/$PG_DB"
  "$PORTCULLIS_BIN" migrate --database-url "$PG_OWNER_URL" >"$WORK/migrate.log" 2>&1 \
    || { cat "$WORK/migrate.log" >&2; die "portcullis migrate failed"; }
  # The app role the migration created (no password: the local server trusts loopback).
  PG_APP_URL=$(sed -E 's#^(postgres(ql)?://)[^@/]*@#\1portcullis_app@#' <<<"$PG_OWNER_URL")
  PC_ENV+=("PORTCULLIS_DATA__DATABASE_URL=$PG_APP_URL")
  log "Portcullis store: PostgreSQL database $PG_DB (as portcullis_app)"
else
  log "Portcullis store: embedded SQLite in $WORK/portcullis"
fi
env "${PC_ENV[@]}" "$PORTCULLIS_BIN" serve >"$WORK/portcullis.out" 2>"$WORK/portcullis.err" &
PC_PID=$!
ADMIN_TOKEN=$(wait_line "$WORK/portcullis.out" "export PORTCULLIS_ADMIN_TOKEN=" "$PC_PID")
PC_BASE=$(wait_line "$WORK/portcullis.out" "portcullis listening on" "$PC_PID")

admin() { # admin PATH JSON -> response body
  curl -sSf -X POST "$PC_BASE/admin/v1$1" -H "authorization: Bearer $ADMIN_TOKEN" \
    -H 'content-type: application/json' -d "$2"
}
jget() { "$PY" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
admin /tenants '{"name":"bench"}' >/dev/null
CONN_ID=$(admin /tenants/bench/connections \
  "{\"name\":\"crm\",\"kind\":\"http\",\"url\":\"$UP_URL\",\"classify\":{\"get_contact\":\"read\"}}" | jget '["id"]')
AGENT_ID=$(admin /tenants/bench/agents '{"name":"bench"}' | jget '["id"]')
admin /tenants/bench/grants "{\"agent\":\"$AGENT_ID\",\"connection\":\"$CONN_ID\"}" >/dev/null
PC_TOKEN=$(admin "/tenants/bench/agents/$AGENT_ID/tokens" '{}' | jget '["token"]')
PC_URL=$PC_BASE/t/bench/mcp
log "Portcullis: $PC_URL"

# --- ContextForge ---------------------------------------------------------------------------
if [[ " $TARGETS " == *" contextforge "* ]]; then
  log "starting ContextForge (first start migrates its SQLite database)"
  CF_LINES=$("$HERE/contextforge.sh" start "$UP_URL" "$WORK/contextforge") || die "ContextForge did not start"
  eval "$CF_LINES"
  log "ContextForge: $CF_URL (tool $CF_TOOL)"
fi

target_url() { case $1 in direct) echo "$UP_URL" ;; portcullis) echo "$PC_URL" ;; contextforge) echo "$CF_URL" ;; esac; }
target_token() { case $1 in direct) echo "" ;; portcullis) echo "$PC_TOKEN" ;; contextforge) echo "$CF_TOKEN" ;; esac; }
target_tool() { case $1 in direct) echo get_contact ;; portcullis) echo crm__get_contact ;; contextforge) echo "$CF_TOOL" ;; esac; }

# Client runs go to the background and are waited for, so that a signal reaches the
# traps at once (bash runs a trap only after a foreground child ends); cleanup ends them.
CHILD=''
run_child() { # run_child CMD... : stdout and stderr pass through
  "$@" &
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  CHILD=
  return "$rc"
}

httpx_run() { # httpx_run TARGET ERA CONC CALLS WARMUP
  run_child timeout "$RUN_TIMEOUT" "$PY" "$HERE/httpx_client.py" --url "$(target_url "$1")" --token "$(target_token "$1")" \
    --tool "$(target_tool "$1")" --era "$2" --concurrency "$3" --calls "$4" --warmup "$5"
}

# The gateway reaches the upstream asynchronously after the connection is created: wait
# until a call through it succeeds (both eras), and for ContextForge likewise.
for t in $TARGETS; do
  ok=
  for _ in $(seq 120); do
    if httpx_run "$t" 2026 1 1 0 >/dev/null 2>&1 && httpx_run "$t" initialize 1 1 0 >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  [[ -n $ok ]] || { httpx_run "$t" 2026 1 1 0 >&2 || true; httpx_run "$t" initialize 1 1 0 >&2 || true; die "no successful call to $t"; }
done

sleep 2
PC_IDLE=$(status_kib "$PC_PID" VmRSS)
UP_IDLE=$(status_kib "$UP_PID" VmRSS)
CF_IDLE=0 CF_IDLE_PSS=0
if [[ -n $CF_PID ]]; then
  CF_IDLE=$(group_kib "$CF_PID" VmRSS)
  CF_IDLE_PSS=$(group_pss_kib "$CF_PID")
fi

# --- measurements -----------------------------------------------------------------------------
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
record() { # record CLIENT TARGET ERA CONC JSON
  "$PY" - "$@" >>"$RESULTS" <<'EOF'
import json, sys
client, target, era, conc, raw = sys.argv[1:6]
out = {"client": client, "target": target, "era": era, "concurrency": int(conc)}
try:
    d = json.loads(raw)
except ValueError:
    d = {"error": raw[-300:] or "no output"}
if client == "ts" and "result" in d:
    r = d["result"]
    if r.get("errors") or r.get("toolErrors"):
        d = {"error": f"{r.get('errors')} errors, {r.get('toolErrors')} tool errors: {r.get('errorMessages')}"}
    else:
        lat = r["latencyMs"]
        d = {"calls": r["requests"], "p50_ms": lat["p50"], "p99_ms": lat["p99"], "max_ms": lat["max"],
             "calls_per_s": r["throughput"]}
elif client == "ts" and "error" not in d:
    d = {"error": raw[-300:]}
if "error" in d and not isinstance(d["error"], str):
    d = {"error": json.dumps(d["error"])}
out.update(d)
print(json.dumps(out))
EOF
}

ts_run() { # ts_run TARGET ERA CONC CALLS
  local era=legacy header=()
  [[ $2 == 2026 ]] && era=modern
  [[ $1 != direct ]] && header=(--header "Authorization: Bearer $(target_token "$1")")
  # HOME: the Inspector keeps a (here empty) state folder under ~/.mcp-inspector.
  HOME=$BENCH_HOME/inspector-home run_child timeout "$RUN_TIMEOUT" "$INSPECTOR" --cli "$(target_url "$1")" "${header[@]}" \
    --method tools/call --tool-name "$(target_tool "$1")" --tool-arg id=c_1 \
    --load --load-requests "$4" --load-concurrency "$3" --protocol-era "$era" --format json \
    2>>"$WORK/inspector.err"
}

cf_log_level() {
  curl -sf -o /dev/null -X POST "$CF_BASE/logging/setLevel" -H "authorization: Bearer $CF_TOKEN" \
    -H 'content-type: application/json' -d "{\"level\":\"$1\"}" || log "could not reset ContextForge's log level"
}

mkdir -p "$BENCH_HOME/inspector-home"
for client in $CLIENTS; do
  for era in $ERAS; do
    for conc in 1 "$CONCURRENCY"; do
      for t in $TARGETS; do
        log "$client $era c=$conc $t"
        out=$WORK/run.json
        if [[ $client == httpx ]]; then
          httpx_run "$t" "$era" "$conc" "$CALLS" "$WARMUP" >"$out" || true
        else
          ts_run "$t" "$era" "$conc" "$TS_WARMUP" >/dev/null || true # warm-up (server side)
          ts_run "$t" "$era" "$conc" "$CALLS" >"$out" || true
          # The Inspector CLI sends `logging/setLevel debug` on every initialize-era connect,
          # and ContextForge applies it process-wide: put its level back for the next rows.
          [[ $t == contextforge ]] && cf_log_level error
        fi
        record "$client" "$t" "$era" "$conc" "$(cat "$out")"
      done
    done
  done
done

PC_PEAK=$(status_kib "$PC_PID" VmHWM)
PC_AFTER=$(status_kib "$PC_PID" VmRSS)
UP_PEAK=$(status_kib "$UP_PID" VmHWM)
CF_PEAK=0 CF_AFTER=0 CF_PROCS=0 CF_AFTER_PSS=0
if [[ -n $CF_PID ]]; then
  CF_PEAK=$(group_kib "$CF_PID" VmHWM)
  CF_AFTER=$(group_kib "$CF_PID" VmRSS)
  CF_AFTER_PSS=$(group_pss_kib "$CF_PID")
  CF_PROCS=$(pgrep -g "$CF_PID" | wc -l)
fi

# --- report ---------------------------------------------------------------------------------
echo
echo "Portcullis store: $STORE; $CALLS calls per row; concurrency 1 and $CONCURRENCY; binary $PORTCULLIS_BIN"
[[ -n $CF_PID ]] && echo "ContextForge 1.1.0: SQLite, stateful sessions, ${CF_WORKERS:-1} uvicorn worker(s)"
echo "$(nproc) CPUs shared by the upstream, the gateways and the clients"
echo
"$PY" - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["client"], r["era"], r["concurrency"], r["target"]): r for r in rows}
def ms(v): return f"{v:.3f}" if isinstance(v, (int, float)) else "–"
print("| client | era (negotiated) | target | conc. | p50 ms | p99 ms | added p50 | added p99 | calls/s | calls ≥35 ms | CF added p50 ÷ PC added p50 |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    key = (r["client"], r["era"], r["concurrency"])
    d = by.get(key + ("direct",), {})
    era = r["era"] + (f" ({r['negotiated']})" if r.get("negotiated") else "")
    client = {"ts": "TS SDK (Inspector --load)", "httpx": "httpx"}.get(r["client"], r["client"])
    if "error" in r:
        print(f"| {client} | {era} | {r['target']} | {r['concurrency']} | error: {r['error'][:120].replace('|', '/')} | | | | | | |")
        continue
    added = lambda q: r[q] - d[q] if r["target"] != "direct" and q in d else None
    ratio = ""
    if r["target"] == "contextforge":
        pc = by.get(key + ("portcullis",), {})
        if "p50_ms" in pc and "p50_ms" in d and pc["p50_ms"] > d["p50_ms"] and r["p50_ms"] > d["p50_ms"]:
            ratio = f"{(r['p50_ms'] - d['p50_ms']) / (pc['p50_ms'] - d['p50_ms']):.1f}×"
    stalls = r.get("stalls_ge_35ms", "n/a")
    print(f"| {client} | {era} | {r['target']} | {r['concurrency']} | {ms(r['p50_ms'])} | {ms(r['p99_ms'])} | "
          f"{ms(added('p50_ms'))} | {ms(added('p99_ms'))} | {r['calls_per_s']:.0f} | {stalls} | {ratio} |")
# A sequential call to the demo upstream or through Portcullis takes a few ms here; calls of
# 35 ms or more there are delayed-ACK stalls (ContextForge's own work can exceed 35 ms).
stalled = sorted({r["target"] for r in rows if r["concurrency"] == 1 and r["target"] != "contextforge"
                  and r.get("stalls_ge_35ms", 0) > max(1, r.get("calls", 0) // 100)})
if stalled:
    print()
    print(f"Note: more than 1 % of the sequential httpx calls took 35 ms or more on: {', '.join(stalled)}."
          " Steps near 40 ms are delayed-ACK stalls: that binary's listeners send small segments"
          " without TCP_NODELAY (Nagle waits for the client's delayed ACK).")
EOF
echo
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo "RSS (VmRSS idle after setup, before load / VmRSS after the runs / peak VmHWM):"
echo "- Portcullis: $(mib "$PC_IDLE") idle, $(mib "$PC_AFTER") after, $(mib "$PC_PEAK") peak"
if [[ -n $CF_PID ]]; then
  # Its worker forks sandbox pools (jq/regex workers) that share most pages with it, so the
  # RSS sum counts those pages several times; the PSS sum splits them.
  echo "- ContextForge ($CF_PROCS processes, summed): $(mib "$CF_IDLE") idle, $(mib "$CF_AFTER") after, $(mib "$CF_PEAK") peak (sum of each process's VmHWM); PSS summed: $(mib "$CF_IDLE_PSS") idle, $(mib "$CF_AFTER_PSS") after"
fi
echo "- demo upstream: $(mib "$UP_IDLE") idle, $(mib "$UP_PEAK") peak"
echo
echo "portcullis audit verify:"
echo '```'
set +e
env "${PC_ENV[@]}" "$PORTCULLIS_BIN" audit verify 2>&1
VERIFY_RC=$?
set -e
echo '```'
echo "audit verify exit status: $VERIFY_RC"
if [[ -s $WORK/inspector.err ]]; then
  grep -v -E 'MaxListenersExceeded|trace-warnings' "$WORK/inspector.err" | head -5 >&2 || true
fi
exit "$VERIFY_RC"
