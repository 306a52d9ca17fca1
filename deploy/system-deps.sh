#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the stack runs on, only those that are missing, without
# questions (CI has no terminal). Uses sudo only when not root and only when it must install.
# With --bench, also nginx's nchan module (the benchmark's comparison) and perf.
# With --test, also what only the test suite needs: Debian's chromium (tests/browser drive it),
# iproute2, procps, curl and openssl (the several-hosts tests and the production edge), and
# PostgreSQL (the outbox tests).
set -euo pipefail

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

missing=()
has redis-server || missing+=(redis-server)
has nginx || missing+=(nginx)
if [ "${1:-}" = "--bench" ]; then
    # The benchmark's comparison (bench/nginx_servers.py): nginx's nchan module.
    [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
    # bench/relay_profile.py: where a delivery's CPU goes, by system call.
    has perf || missing+=(linux-perf)
fi
if [ "${1:-}" = "--test" ]; then
    has chromium || missing+=(chromium)
    # The several-hosts tests (tests/hosts.py): network namespaces, sysctls inside them, curl.
    has ip || missing+=(iproute2)
    has sysctl || missing+=(procps)
    has curl || missing+=(curl)
    has openssl || missing+=(openssl)
    # The outbox tests start their own PostgreSQL server (tests/postgres.py); the cluster
    # Debian's package may start on 5432 is left alone and never used.
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
fi
if ! has python3; then
    missing+=(python3 python3-venv)
elif [ ! -x .venv/bin/python ] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)   # Debian's python3 cannot make a venv without it
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "deps: missing ${missing[*]}; run as root or install sudo." >&2
        exit 1
    }
    sudo=(sudo)
fi
apt_get() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

# nginx-light is the small build where it still exists (Debian 12); plain nginx elsewhere.
pick_nginx() {
    local i
    for i in "${!missing[@]}"; do
        if [ "${missing[$i]}" = nginx ] && apt-cache show nginx-light >/dev/null 2>&1; then
            missing[i]=nginx-light
        fi
    done
}

echo "deps: installing ${missing[*]}" >&2
pick_nginx
if ! apt_get install -y --no-install-recommends "${missing[@]}"; then
    apt_get update
    pick_nginx
    apt_get install -y --no-install-recommends "${missing[@]}"
fi
