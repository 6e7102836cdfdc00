#!/usr/bin/env bash
# Creates (once) a venv for the independent checks and installs a pinned requirements file
# into it, only when the installed set differs from the pinned one. Idempotent; safe to run
# before every check. By default: clients/requirements.txt (mcp==2.3.0 and its pinned
# dependencies) into `venv`; independent/requirements.txt (rfc8785, tlog-scales) goes into
# its own venv.
#
#   PY=$(bash clients/setup.sh)        # the venv's python is the last (and only stdout) line
#   $PY clients/python_sdk.py --help
#   PY=$(bash clients/setup.sh independent/requirements.txt venv-independent)
#
# Env: CLIENTS_HOME (default ~/.cache/portcullis-clients) holds the venv;
#      PYTHON (default python3) creates it and must be >= 3.11 (tlog-scales 0.0.3 needs it; mcp 2.3.0 needs 3.10).
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$(realpath "${1:-$here/requirements.txt}")"
home="${CLIENTS_HOME:-$HOME/.cache/portcullis-clients}"
venv="$home/${2:-venv}"
python="${PYTHON:-python3}"
py="$venv/bin/python"

log() { echo "setup.sh: $*" >&2; }

# The pinned set, normalized (PEP 503 names, lower case), one `name==version` a line, sorted.
normalize() {
    { grep -Ev '^[[:space:]]*(#|$)' || true; } | sed -E 's/[[:space:]]+#.*$//; s/[[:space:]]//g' \
        | awk -F'==' '{ n = tolower($1); gsub(/[-_.]+/, "-", n); print n "==" $2 }' | sort
}

if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        log "$python is $("$python" --version 2>&1); the pinned packages need Python >= 3.11 (set PYTHON=...)"
        exit 1
    fi
    log "creating $venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    mkdir -p "$home"
    "$python" -m venv "$venv"
fi

want="$(normalize < "$req")"
have="$("$py" -m pip freeze 2>/dev/null | normalize)"
if [ "$want" != "$have" ]; then
    log "installing $req into $venv"
    # Every dependency is pinned in the file, so nothing is resolved beyond it.
    "$py" -m pip install --disable-pip-version-check --no-deps -r "$req" >&2
    # Drop anything installed earlier that the pinned set no longer has.
    extra="$(comm -13 <(echo "$want" | cut -d= -f1 | sort) <("$py" -m pip freeze | normalize | cut -d= -f1 | sort))"
    if [ -n "$extra" ]; then
        log "removing packages not in $req: $(echo $extra)"
        # shellcheck disable=SC2086
        "$py" -m pip uninstall --disable-pip-version-check -y $extra >&2
    fi
    "$py" -m pip check >&2
else
    log "$venv already has the pinned set"
fi

echo "$py"
