#!/usr/bin/env bash
# The redactor against Presidio on the same corpus, each on one core (CPU 0):
#   1. the redactor's benchmark (writes corpus.txt, labels.tsv and rust.json),
#   2. Presidio's six pattern recognizers on that corpus, scored the same way.
#
#   bash bench/presidio/run.sh            # 3 MB corpus
#   MB=1 bash bench/presidio/run.sh
#
# Env: MB (corpus size, default 3), REDACT_CORPUS_DIR (default: a fresh temporary folder),
#      CLIENTS_HOME (where clients/setup.sh keeps venv-presidio).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/portcullis-target}"
out="${REDACT_CORPUS_DIR:-$(mktemp -d)}"

py="$(bash clients/setup.sh bench/presidio/requirements.txt venv-presidio | tail -n1)"
cargo bench -p portcullis-redact --bench throughput --no-run
REDACT_CORPUS_DIR="$out" taskset -c 0 cargo bench -p portcullis-redact --bench throughput -- --mb "${MB:-3}"
echo
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 "$py" bench/presidio/compare.py "$out"
