#!/usr/bin/env bash
# What credential injection adds to a proxied call, measured with a plain HTTP client
# (Python's http.client, one keep-alive connection, sequential): GET calls to a loopback REST
# API (Python's http.server) directly, through a Portcullis HTTP API connection without a
# credential, and through one that injects a bearer credential from the vault. The three rows
# run in the same process, interleaved in rounds; "added" is each row's p50 minus the direct
# p50, and "injection" the bearer row minus the plain one.
#
#   cargo build --release -p portcullis
#   bash bench/inject.sh                 # CALLS=2000 per row, ROUNDS=4
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${PORTCULLIS_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis}
CALLS=${CALLS:-2000}
ROUNDS=${ROUNDS:-4}
[[ -x $BIN ]] || { echo "no release binary at $BIN: cargo build --release -p portcullis" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# The upstream: a static file API on loopback.
mkdir -p "$WORK/www/v1"
echo '{"ok":true}' >"$WORK/www/v1/item"
python3 -m http.server 0 --bind 127.0.0.1 --directory "$WORK/www" >"$WORK/api.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q 'Serving HTTP' "$WORK/api.out" && break; sleep 0.1; done
API_PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$WORK/api.out" | head -1)

PORTCULLIS_DATA__DIR=$WORK/data PORTCULLIS_SERVER__LISTEN=127.0.0.1:0 \
  PORTCULLIS_EGRESS__ALLOW_PRIVATE='["127.0.0.1/32"]' PORTCULLIS_LOG__FILTER=warn \
  PORTCULLIS_AUTH__RATE_LIMIT_PER_MINUTE=1000000000 PORTCULLIS_AUTH__RATE_LIMIT_BURST=1000000 \
  "$BIN" serve >"$WORK/gw.out" 2>"$WORK/gw.err" &
PIDS+=($!)
for _ in $(seq 1 300); do grep -q '^portcullis listening on ' "$WORK/gw.out" 2>/dev/null && break; sleep 0.1; done
export PORTCULLIS_URL=$(awk '/^portcullis listening on /{print $4}' "$WORK/gw.out")
export PORTCULLIS_ADMIN_TOKEN=$(grep -m1 'export PORTCULLIS_ADMIN_TOKEN=' "$WORK/gw.out" | cut -d= -f2)
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

"$BIN" tenants create bench >/dev/null
printf %s "sk_live_bench_0123456789abcdef" | "$BIN" secrets put --tenant bench api-key >/dev/null
PLAIN=$("$BIN" connections add --tenant bench plain --api-url "http://127.0.0.1:$API_PORT" | field id)
BEARER=$("$BIN" connections add --tenant bench bearer --api-url "http://127.0.0.1:$API_PORT" --auth bearer:api-key | field id)
AGENT=$("$BIN" agents create --tenant bench bot | field id)
"$BIN" grants add --tenant bench --agent "$AGENT" --connection "$PLAIN" >/dev/null
"$BIN" grants add --tenant bench --agent "$AGENT" --connection "$BEARER" >/dev/null
TOKEN=$("$BIN" tokens create --tenant bench --agent "$AGENT" | field token)

python3 - "$API_PORT" "${PORTCULLIS_URL#http://}" "$TOKEN" "$CALLS" "$ROUNDS" <<'PY'
import http.client, statistics, sys, time
api_port, gw, token, calls, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
gw_host, gw_port = gw.split(":")
rows = {
    "direct": (("127.0.0.1", int(api_port)), "/v1/item", {}),
    "portcullis, no credential": ((gw_host, int(gw_port)), "/t/bench/http/plain/v1/item", {"Authorization": f"Bearer {token}"}),
    "portcullis, bearer injected": ((gw_host, int(gw_port)), "/t/bench/http/bearer/v1/item", {"Authorization": f"Bearer {token}"}),
}
samples = {name: [] for name in rows}
conns = {name: http.client.HTTPConnection(*addr) for name, (addr, _, _) in rows.items()}
def call(name):
    _, path, headers = rows[name]
    c = conns[name]
    t = time.perf_counter()
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, (name, r.status, body[:200])
    return time.perf_counter() - t
for name in rows:            # warm up: connections, caches, the tenant key
    for _ in range(100):
        call(name)
for _ in range(rounds):
    for name in rows:
        for _ in range(calls // rounds):
            samples[name].append(call(name))
p = lambda xs, q: sorted(xs)[int(len(xs) * q) - 1] * 1000
direct = p(samples["direct"], 0.5)
print(f"| row | calls | p50 ms | p99 ms | added p50 ms |")
print(f"|---|---|---|---|---|")
for name, xs in samples.items():
    print(f"| {name} | {len(xs)} | {p(xs, .5):.3f} | {p(xs, .99):.3f} | {p(xs, .5) - direct:+.3f} |")
inj = p(samples["portcullis, bearer injected"], .5) - p(samples["portcullis, no credential"], .5)
print(f"\ninjection (bearer p50 minus no-credential p50): {inj * 1000:+.0f} µs")
PY
