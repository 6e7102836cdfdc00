#!/usr/bin/env bash
# Runs ContextForge 1.1.0 (the `mcp-contextforge-gateway` PyPI package, installed by
# bench/setup.sh) on SQLite with stateful MCP sessions, in front of one MCP upstream, for the
# gateway benchmark (bench/compare.sh). It registers the upstream as a ContextForge
# "gateway", exposes its tools through a virtual server with a streamable HTTP MCP endpoint,
# and mints a bearer token for MCP clients.
#
#   bench/contextforge.sh start UPSTREAM_URL STATE_DIR   # prints CF_* lines (shell syntax), returns
#   bench/contextforge.sh stop STATE_DIR
#
# `start` leaves ContextForge running in its own process group (id = CF_PID) and prints:
#   CF_PID=…  CF_BASE=http://127.0.0.1:PORT  CF_URL=…/servers/ID/mcp  CF_TOKEN=…  CF_TOOL=…
# so a caller can `eval "$(bench/contextforge.sh start …)"`. Logs go to STATE_DIR/contextforge.log.
# Knobs: CF_PORT (default: a free port), CF_WORKERS (uvicorn workers, default 1),
# CF_CACHE_TYPE (default: ContextForge's own default, `database`), BENCH_HOME.
#
# What it takes to run 1.1.0 this way (found by reading its config.py and trying):
# - Secrets are validated at import time and it refuses to start on weak or placeholder
#   values: JWT_SECRET_KEY and AUTH_ENCRYPTION_SECRET need >= 32 random characters (an
#   entropy check too), and because email auth is on by default, PLATFORM_ADMIN_PASSWORD
#   and DEFAULT_USER_PASSWORD must be strong as well ("changeme" is refused). We generate
#   fresh ones per run.
# - USE_STATEFUL_SESSIONS defaults to false; we set it true (Mcp-Session-Id sessions).
#   JSON_RESPONSE_ENABLED (default true) keeps replies plain JSON rather than SSE.
# - SSRF protection refuses loopback upstreams by default: SSRF_ALLOW_LOCALHOST=true.
#   Registration also rewrites 127.0.0.1 to `localhost` in the stored upstream URL.
# - A rate limiter is on by default: 100 requests/minute for MCP ("MEDIUM tier"), 10/min
#   for login, and 5 violations lock the client out for 15 minutes. A benchmark trips it
#   at once, so RATE_LIMITING_ENABLED=false (Portcullis's limits are raised likewise).
# - Auth: AUTH_REQUIRED defaults to true. Basic auth is off for the API by default. We log
#   in as the platform admin (POST /auth/email/login -> a 20-minute "session" JWT), then
#   create an API token (POST /tokens, 1 day) and hand that to the MCP clients. Minting a
#   JWT offline with `python -m mcpgateway.utils.create_jwt_token` also works but needs the
#   same secret, jti/exp claims and an existing user, so the API route is simpler.
# - The token handed out is the admin's API token. A scoped one (POST /tokens with
#   "scope": {"server_id": ..., "permissions": ["tools.read", "tools.execute"]}) serves the
#   httpx client, but the MCP Inspector CLI sends `logging/setLevel debug` on every
#   initialize-era connect and gives up when that is refused ("Access denied": it needs
#   admin.system_config). ContextForge applies logging/setLevel to the whole process, so
#   compare.sh sets it back to `error` (POST /logging/setLevel) after each Inspector run.
# - With its defaults the uvicorn worker forks 4 sandbox processes (jq/regex pools), so
#   one worker is 5 processes; they share most of their pages.
# - Upstream tools are renamed `<gateway slug>-<tool name with - for _>`: `get_contact` on a
#   gateway named `crm` becomes `crm-get-contact`.
# - A virtual server (POST /servers, body {"server": {...}, "visibility": "public"}) bundles
#   tool ids; its MCP endpoint is /servers/<id>/mcp. The `url` it reports is built from
#   APP_DOMAIN (default http://localhost:4444), not the port it listens on, so we set
#   APP_DOMAIN to the real base URL.
# - Several uvicorn workers with stateful sessions need session affinity (Redis); the
#   default here is one worker. Redis is only used when CACHE_TYPE=redis.
# - Protocol: `initialize` negotiates 2025-06-18 or 2025-11-25 (a request for 2026-07-28
#   is answered with 2025-11-25), but a stateless 2026-07-28 request (per-request _meta,
#   no session) is also answered.
set -euo pipefail

BENCH_HOME=${BENCH_HOME:-$HOME/.cache/portcullis-bench}
VENV=$BENCH_HOME/venv
CF_WORKERS=${CF_WORKERS:-1}

die() { echo "contextforge.sh: $*" >&2; exit 1; }

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

secret() {
  "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(48))'
}

json_field() { # json_field EXPR  (reads JSON on stdin; EXPR is Python on `d`)
  "$VENV/bin/python" -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

stop() {
  local dir=$1 pid
  [[ -f $dir/contextforge.pid ]] || return 0
  pid=$(cat "$dir/contextforge.pid")
  # Our process group only (started with setsid, so its id is the leader's pid).
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$dir/contextforge.pid"
}

start() {
  local upstream=$1 dir=$2
  [[ -x $VENV/bin/mcpgateway ]] || die "ContextForge is not installed: run bench/setup.sh"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local port=${CF_PORT:-$(free_port)}
  local base="http://127.0.0.1:$port"
  local admin_email=admin@example.com
  local admin_password
  admin_password="Bench-$(secret)"

  (
    export DATABASE_URL="sqlite:///$dir/mcp.db"
    export HOST=127.0.0.1 PORT="$port" APP_DOMAIN="$base"
    JWT_SECRET_KEY=$(secret) AUTH_ENCRYPTION_SECRET=$(secret)
    export JWT_SECRET_KEY AUTH_ENCRYPTION_SECRET
    export PLATFORM_ADMIN_EMAIL="$admin_email" PLATFORM_ADMIN_PASSWORD="$admin_password"
    DEFAULT_USER_PASSWORD="Bench-$(secret)"
    export DEFAULT_USER_PASSWORD
    export AUTH_REQUIRED=true
    export USE_STATEFUL_SESSIONS=true JSON_RESPONSE_ENABLED=true
    export SSRF_ALLOW_LOCALHOST=true
    export RATE_LIMITING_ENABLED=false
    export MCPGATEWAY_UI_ENABLED=false MCPGATEWAY_ADMIN_API_ENABLED=false
    export LOG_LEVEL=ERROR
    [[ -n ${CF_CACHE_TYPE:-} ]] && export CACHE_TYPE=$CF_CACHE_TYPE
    cd "$dir"
    # setsid: its own process group, so `stop` (and compare.sh) end exactly its processes.
    setsid "$VENV/bin/mcpgateway" --host 127.0.0.1 --port "$port" --workers "$CF_WORKERS" \
      >"$dir/contextforge.log" 2>&1 &
    echo $! >"$dir/contextforge.pid"
  )
  local pid
  pid=$(cat "$dir/contextforge.pid")

  # First start runs its migrations (several seconds).
  local ok=
  for _ in $(seq 240); do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$dir/contextforge.log" >&2; die "ContextForge exited"; }
    if curl -sf "$base/health" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  [[ -n $ok ]] || { stop "$dir"; die "ContextForge did not become healthy on $base"; }

  local login session_token
  login=$(curl -sf -X POST "$base/auth/email/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$admin_email\",\"password\":\"$admin_password\"}") \
    || { stop "$dir"; die "admin login failed"; }
  session_token=$(json_field 'd["access_token"]' <<<"$login")
  local auth=(-H "authorization: Bearer $session_token" -H 'content-type: application/json')

  curl -sf -X POST "$base/gateways" "${auth[@]}" \
    -d "{\"name\":\"crm\",\"url\":\"$upstream\",\"transport\":\"STREAMABLEHTTP\"}" >/dev/null \
    || { stop "$dir"; die "registering the upstream failed (see $dir/contextforge.log)"; }

  # Tool discovery may finish after the registration answers: wait for the read tool.
  local tool_id='' tool_name=
  for _ in $(seq 100); do
    read -r tool_id tool_name < <(curl -sf "$base/tools" "${auth[@]}" | json_field \
      '" ".join(next(([t["id"], t["name"]] for t in (d if isinstance(d, list) else d.get("items", [])) if t.get("originalName") == "get_contact"), ["", ""]))') || true
    [[ -n $tool_id ]] && break
    sleep 0.2
  done
  [[ -n $tool_id ]] || { stop "$dir"; die "ContextForge never listed the upstream's get_contact"; }

  local server_id
  server_id=$(curl -sf -X POST "$base/servers" "${auth[@]}" \
    -d "{\"server\":{\"name\":\"bench\",\"associated_tools\":[\"$tool_id\"]},\"visibility\":\"public\"}" \
    | json_field 'd["id"]') || { stop "$dir"; die "creating the virtual server failed"; }

  local api_token
  api_token=$(curl -sf -X POST "$base/tokens" "${auth[@]}" \
    -d '{"name":"bench-client","expires_in_days":1}' | json_field 'd["access_token"]') \
    || { stop "$dir"; die "creating the API token failed"; }

  echo "CF_PID=$pid"
  echo "CF_BASE=$base"
  echo "CF_URL=$base/servers/$server_id/mcp"
  echo "CF_TOKEN=$api_token"
  echo "CF_TOOL=$tool_name"
}

case ${1:-} in
  start) [[ $# -eq 3 ]] || die "usage: $0 start UPSTREAM_URL STATE_DIR"; start "$2" "$3" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop STATE_DIR"; stop "$2" ;;
  *) die "usage: $0 start UPSTREAM_URL STATE_DIR | stop STATE_DIR" ;;
esac
