#!/usr/bin/env bash
# A fresh SoftHSM2 token for the PKCS#11 key provider tests. Installs softhsm2 when missing,
# creates a token "portcullis-test" (user PIN 1234, SO PIN 5678) in a fresh token folder, and
# prints the environment the tests read, for `eval "$(bash .ci/softhsm.sh)"`. Only the export
# lines go to stdout; everything else goes to stderr.
set -euo pipefail

log() { echo "softhsm: $*" >&2; }

if ! command -v softhsm2-util >/dev/null 2>&1; then
    log "installing softhsm2"
    export DEBIAN_FRONTEND=noninteractive
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    if ! $sudo apt-get install -y --no-install-recommends softhsm2 >&2; then
        $sudo apt-get update >&2
        $sudo apt-get install -y --no-install-recommends softhsm2 >&2
    fi
fi

module=""
for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
    if [ -f "$candidate" ]; then module="$candidate"; break; fi
done
if [ -z "$module" ] && command -v dpkg >/dev/null 2>&1; then
    module="$(dpkg -L libsofthsm2 softhsm2 2>/dev/null | grep '/libsofthsm2\.so$' | head -n 1 || true)"
fi
if [ -z "$module" ]; then
    log "cannot find libsofthsm2.so"
    exit 1
fi

dir="${PORTCULLIS_SOFTHSM_DIR:-$HOME/.cache/portcullis-softhsm}"
tokens="$dir/tokens"
conf="$dir/softhsm2.conf"
mkdir -p "$dir"
rm -rf "$tokens"
mkdir -p "$tokens"
chmod 0700 "$dir" "$tokens"
cat >"$conf" <<CONF
directories.tokendir = $tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF

export SOFTHSM2_CONF="$conf"
softhsm2-util --init-token --free --label portcullis-test --pin 1234 --so-pin 5678 >&2
log "token portcullis-test ready in $tokens (module $module)"

printf 'export SOFTHSM2_CONF=%q\n' "$conf"
printf 'export PORTCULLIS_TEST_PKCS11_MODULE=%q\n' "$module"
echo 'export PORTCULLIS_TEST_PKCS11_TOKEN=portcullis-test'
echo 'export PORTCULLIS_TEST_PKCS11_PIN=1234'
