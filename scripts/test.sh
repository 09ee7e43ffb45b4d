#!/usr/bin/env bash
# Runs every test of loglines. Installs what the tests need when it is missing: redis-server,
# supervisor and openssl from the system package manager (apt), or supervisor from PyPI into
# ./.venv when apt cannot be used. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif have sudo; then sudo -n "$@"; else return 1; fi
}

apt_install() {
    have apt-get || return 1
    # A fresh machine has no package lists yet: update once if the first try cannot find them.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
        as_root apt-get update -qq >/dev/null 2>&1 &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    }
}

if [ -x .venv/bin/supervisord ]; then
    export PATH="$PWD/.venv/bin:$PATH"
fi

missing=()
have redis-server || missing+=(redis-server)
have supervisord || missing+=(supervisor)
have openssl || missing+=(openssl) # the Redis TLS tests make their certificates with it
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}" >&2
    apt_install "${missing[@]}" || echo "test.sh: could not install ${missing[*]} with apt-get" >&2
fi
if ! have supervisord; then
    echo "test.sh: installing supervisor from PyPI into .venv" >&2
    python3 -m venv .venv && .venv/bin/pip install -q supervisor
    export PATH="$PWD/.venv/bin:$PATH"
fi
for bin in redis-server supervisord openssl; do
    if ! have "$bin"; then
        echo "test.sh: $bin is still missing; install it with 'apt-get install redis-server supervisor openssl'" >&2
        exit 1
    fi
done

exec cargo test "$@"
