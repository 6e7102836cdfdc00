#!/usr/bin/env bash
# The no-leak canary: a random canary secret goes into every seeded tenant's vault and into
# its demo upstream's environment; the whole integration suite then runs with logs at debug
# level, every response body scanned (the test support prints a marker on a hit), and every
# test's data folder kept. Afterwards the logs, the kept databases, their write-ahead logs and
# every other kept file are searched for the canary's plaintext: zero hits, or this fails.
# Set PORTCULLIS_TEST_BACKEND=postgres to run it on PostgreSQL (the raw files are then the
# PostgreSQL cluster's, which this script does not read; responses and logs are still scanned).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/portcullis-target}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
canary="canary$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$work/data"
# Launched programs run as their own users: they must be able to enter the kept folders
# (the tests' own folders below are opened to them; nothing else is kept here).
chmod 711 "$work" "$work/data"


echo "canary run: data kept in $work/data" >&2
status=0
PORTCULLIS_TEST_CANARY="$canary" PORTCULLIS_TEST_KEEP_DATA="$work/data" TEST_LOG=1 \
    cargo test -p portcullis --test it --locked >"$work/test.out" 2>"$work/test.err" || status=$?
if [[ $status -ne 0 ]]; then
    tail -n 80 "$work/test.out" >&2
    echo "canary run: the integration suite failed" >&2
    exit 1
fi

apps=$(find "$work/data" -mindepth 1 -maxdepth 1 -type d | wc -l)
files=$(find "$work/data" -type f | wc -l)
lines=$(cat "$work/test.out" "$work/test.err" | wc -l)
echo "canary run: $apps test gateways, $files files kept, $lines log lines" >&2
if (( apps < 50 )); then
    echo "canary run: too few gateways kept ($apps): the scan would prove little" >&2
    exit 1
fi
# The canary did go in: every seeded tenant audited a `canary` secret.
if ! grep -rqa -- "secret:canary" "$work/data"; then
    echo "canary run: no tenant stored the canary; the scan would prove nothing" >&2
    exit 1
fi

hits=0
if grep -q "CANARY LEAK" "$work/test.err" "$work/test.out"; then
    echo "LEAK: a response body carried the canary" >&2
    hits=$((hits + 1))
fi
for log in "$work/test.out" "$work/test.err"; do
    if grep -q --binary-files=text -- "$canary" "$log"; then
        echo "LEAK: the canary is in $(basename "$log")" >&2
        hits=$((hits + 1))
    fi
done
while IFS= read -r -d '' file; do
    echo "LEAK: the canary is in ${file#"$work/data/"}" >&2
    hits=$((hits + 1))
done < <(grep -rlZ --binary-files=text -- "$canary" "$work/data" || true)
if (( hits > 0 )); then
    echo "canary run: $hits leak(s)" >&2
    exit 1
fi
echo "canary run: zero hits for the canary in logs, responses, databases and WAL files" >&2
