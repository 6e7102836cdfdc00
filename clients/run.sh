#!/usr/bin/env bash
# Independent clients against a real gateway: the official Python MCP SDK (mcp 2.3.0, pinned
# in clients/requirements.txt) reads resources and prompts through `portcullis serve --demo`
# in both protocol eras, and an agent granted a single tool finds them "not found"
# (clients/python_sdk.py says what exactly is checked).
#
#   bash clients/run.sh             # after `cargo build -p portcullis`
#   PORTCULLIS_BIN=target/release/portcullis bash clients/run.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${PORTCULLIS_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/portcullis}
die() { echo "clients: $*" >&2; exit 1; }
[[ -x $BIN ]] || die "no portcullis binary at $BIN (build it, or set PORTCULLIS_BIN)"

PY=$(bash "$HERE/setup.sh" | tail -n1)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-clients.XXXXXX")
PID=
cleanup() {
  local rc=$?
  [[ -n $PID ]] && kill "$PID" 2>/dev/null
  wait 2>/dev/null || true
  if ((rc != 0)); then echo "clients: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PORTCULLIS_DATA__DIR=$WORK/data PORTCULLIS_SERVER__LISTEN=127.0.0.1:0 \
  PORTCULLIS_AUDIT__CHECKPOINT_INTERVAL_SECS=0 \
  "$BIN" serve --demo >"$WORK/gateway.out" 2>"$WORK/gateway.err" &
PID=$!
for _ in $(seq 1 300); do
  grep -q '^portcullis listening on ' "$WORK/gateway.out" 2>/dev/null && break
  sleep 0.1
done
grep -q '^portcullis listening on ' "$WORK/gateway.out" || die "the gateway did not start"
BASE=$(grep -m1 '^portcullis listening on ' "$WORK/gateway.out" | awk '{print $4}')
ADMIN=$(grep -m1 -o 'PORTCULLIS_ADMIN_TOKEN=pcadm_[0-9a-f]*' "$WORK/gateway.out" | cut -d= -f2)
AGENT_TOKEN=$(grep -m1 -o 'agent token (shown once): *pca_[0-9a-f]*' "$WORK/gateway.out" | awk '{print $NF}')
[[ -n $ADMIN && -n $AGENT_TOKEN ]] || die "no tokens printed on first start"
export PORTCULLIS_URL=$BASE PORTCULLIS_ADMIN_TOKEN=$ADMIN

field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
HIDDEN=$("$BIN" agents create --tenant demo hidden | field id)
CRM=$("$BIN" connections list --tenant demo --json |
  python3 -c 'import json, sys; print(next(c["id"] for c in json.load(sys.stdin) if c["name"] == "crm"))')
"$BIN" grants add --tenant demo --agent "$HIDDEN" --connection "$CRM" --tool get_contact >/dev/null
HIDDEN_TOKEN=$("$BIN" tokens create --tenant demo --agent "$HIDDEN" | field token)

"$PY" "$HERE/python_sdk.py" --url "$BASE/t/demo/mcp" --token "$AGENT_TOKEN" --hidden-token "$HIDDEN_TOKEN"
