#!/usr/bin/env bash
# Installs the tools of the gateway benchmark (bench/compare.sh) outside the repo, in
# $BENCH_HOME (default ~/.cache/portcullis-bench). Idempotent: re-running checks the pinned
# versions and installs only what is missing.
#
# - venv/: Python 3.12 with ContextForge (`mcp-contextforge-gateway`, the gateway compared
#   against) and httpx (the plain client, bench/httpx_client.py). Every transitive version is
#   pinned by bench/constraints.txt.
# - node/: the official MCP TypeScript SDK client side, through the MCP Inspector CLI
#   (@modelcontextprotocol/inspector, which bundles @modelcontextprotocol/client 2.3.1). Its
#   CLI has a load mode: `mcp-inspector --cli URL --method tools/call --tool-name T --load
#   --load-requests N --load-concurrency C --protocol-era legacy|modern --format json`
#   prints p50/p90/p99 and throughput, so no client script of our own is needed. It declares
#   Node >= 22.19; its CLI load mode works on the Node 20 this machine has (npm warns).
#
# Only package registries are used (PyPI, npm). Python: ~/.pyenv/versions/3.12.1 unless
# BENCH_PYTHON names another 3.12 interpreter.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_HOME=${BENCH_HOME:-$HOME/.cache/portcullis-bench}
BENCH_PYTHON=${BENCH_PYTHON:-$HOME/.pyenv/versions/3.12.1/bin/python3}
CONTEXTFORGE_VERSION=1.1.0
HTTPX_VERSION=0.28.1
INSPECTOR_VERSION=2.12.0

mkdir -p "$BENCH_HOME"

# --- Python: ContextForge and httpx ------------------------------------------------------
VENV=$BENCH_HOME/venv
if [[ ! -x $VENV/bin/python ]]; then
  [[ -x $BENCH_PYTHON ]] || { echo "setup.sh: no Python 3.12 at $BENCH_PYTHON (set BENCH_PYTHON)" >&2; exit 1; }
  "$BENCH_PYTHON" -m venv "$VENV"
fi
want="mcp-contextforge-gateway==$CONTEXTFORGE_VERSION httpx==$HTTPX_VERSION"
have=$("$VENV/bin/python" -m pip freeze 2>/dev/null | grep -E '^(mcp-contextforge-gateway|httpx)==' | sort -r | tr '\n' ' ' || true)
if [[ $have != "$want " ]]; then
  echo "setup.sh: installing $want into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -c "$HERE/constraints.txt" "mcp-contextforge-gateway==$CONTEXTFORGE_VERSION" "httpx==$HTTPX_VERSION"
fi
"$VENV/bin/python" -c 'import httpx, mcpgateway; print("python ok: httpx", httpx.__version__, "/ ContextForge", mcpgateway.__version__)'

# --- Node: the MCP Inspector CLI (TypeScript SDK client) -----------------------------------
NODE_DIR=$BENCH_HOME/node
mkdir -p "$NODE_DIR"
installed=$(node -p "require('$NODE_DIR/node_modules/@modelcontextprotocol/inspector/package.json').version" 2>/dev/null || true)
if [[ $installed != "$INSPECTOR_VERSION" ]]; then
  echo "setup.sh: installing @modelcontextprotocol/inspector@$INSPECTOR_VERSION into $NODE_DIR"
  cat >"$NODE_DIR/package.json" <<EOF
{
  "name": "portcullis-bench-clients",
  "private": true,
  "description": "MCP clients for bench/compare.sh",
  "dependencies": { "@modelcontextprotocol/inspector": "$INSPECTOR_VERSION" }
}
EOF
  # Its postinstall only installs per-client dependencies of a source checkout (a no-op for
  # the published package), so lifecycle scripts are skipped.
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --ignore-scripts --save-exact --loglevel=error)
fi
"$NODE_DIR/node_modules/.bin/mcp-inspector" --cli --version >/dev/null 2>&1 \
  || "$NODE_DIR/node_modules/.bin/mcp-inspector" --cli --help >/dev/null
echo "node ok: @modelcontextprotocol/inspector $(node -p "require('$NODE_DIR/node_modules/@modelcontextprotocol/inspector/package.json').version") on node $(node --version)"
