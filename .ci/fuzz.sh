#!/usr/bin/env bash
# Fuzzes the redactor (crates/portcullis-redact/fuzz, target `redact`) for a bounded time.
# Installs the pinned cargo-fuzz into a cache folder when it is missing. cargo-fuzz needs
# nightly compiler flags (-Zsanitizer); a nightly toolchain is used when rustup has one,
# otherwise the stable toolchain with RUSTC_BOOTSTRAP=1.
#
#   bash .ci/fuzz.sh              # 60 s
#   FUZZ_SECONDS=600 bash .ci/fuzz.sh
#
# Env: FUZZ_SECONDS (default 60), FUZZ_STABLE=1 (use stable + RUSTC_BOOTSTRAP=1 even when
# a nightly toolchain exists), TOOLS_HOME (default ~/.cache/portcullis-tools) for the
# cargo-fuzz binary, CARGO_TARGET_DIR (default ~/.cache/portcullis-target, shared).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds="${FUZZ_SECONDS:-60}"
tools="${TOOLS_HOME:-$HOME/.cache/portcullis-tools}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/portcullis-target}"

if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$tools" >&2
fi

toolchain=()
if [ -z "${FUZZ_STABLE:-}" ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    echo "fuzz.sh: using stable with RUSTC_BOOTSTRAP=1 (no nightly toolchain, or FUZZ_STABLE set)" >&2
    export RUSTC_BOOTSTRAP=1
fi

cd crates/portcullis-redact
corpus="$CARGO_TARGET_DIR/fuzz-corpus/redact"
mkdir -p "$corpus"
# Seeds: a few lines of the kinds the redactor finds (grown by the fuzzer in $corpus).
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
printf 'mail ada@example.com call +44 20 7946 0958' >"$seeds/pii"
printf 'card 4111 1111 1111 1111 iban DE89 3704 0044 0532 0130 00 ssn 123-45-6789 ip 10.0.0.1 ::1' >"$seeds/numbers"
printf 'Authorization: Bearer %s\ntoken=%s' "$(head -c 30 /dev/urandom | base64 | tr -d '/+=')" "ghp_$(head -c 40 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 36)" >"$seeds/secrets"
printf '%%7B%%22k%%22%%3A%%22sk%%5Flive%%5F%s%%22%%7D \\u0073k_live_x -----BEGIN PRIVATE KEY-----\nMIIE\n' "$(head -c 30 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)" >"$seeds/encoded"

PATH="$tools/bin:$PATH" cargo "${toolchain[@]}" fuzz run --fuzz-dir fuzz redact "$corpus" "$seeds" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -print_final_stats=1
