#!/usr/bin/env bash
# Brings a fresh Debian machine to where `make run` and `make test` work: a virtualenv with
# the project, a running PostgreSQL (the installed cluster, or one installed from Debian's
# packages), the tools the real-Asterisk tests need, and a migrated database.
# Idempotent: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*" >&2; }
PY=${PYTHON:-python3}
VENV=.venv
WANT_PBX=${WANT_PBX:-1}
# The development database (SIAGA112_DATABASE_URL) is migrated for `make run`; `make test` leaves
# it alone (WANT_DEV_DB=0): the tests migrate a fresh database of their own every run.
WANT_DEV_DB=${WANT_DEV_DB:-1}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  if [ ! -f /var/lib/apt/periodic/siaga112-updated ] || \
     [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ]; then
    as_root apt-get update -qq
    as_root mkdir -p /var/lib/apt/periodic && as_root touch /var/lib/apt/periodic/siaga112-updated
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# 1. Python environment: the exact versions (and hashes) of requirements-dev.lock (`make lock`
#    writes it from pyproject.toml), then the project itself without dependencies. Reinstalled
#    only when pyproject.toml or the lockfile changed: the stamp holds their digest.
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; "$PY" -m venv "$VENV"; }
fi
stamp="$VENV/.siaga112-installed"
digest=$(cat pyproject.toml requirements-dev.lock | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  say "installing Python dependencies into $VENV (requirements-dev.lock)"
  # (pip's notes about absent local index folders on these machines are noise: filtered)
  quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" >&2 || true; }; return "${PIPESTATUS[0]}"; }
  quiet "$VENV/bin/pip" install -q --upgrade pip || say "pip was not upgraded; going on with the one there is"
  # --no-deps as well: the lock lists every package; pip must not add or change any.
  quiet "$VENV/bin/pip" install -q --no-deps -r requirements-dev.lock \
    || { say "requirements-dev.lock did not install"; exit 1; }
  quiet "$VENV/bin/pip" install -q --no-deps -e . \
    || { say "the project did not install"; exit 1; }
  broken=$("$VENV/bin/pip" check) || { say "installed packages do not fit together: $broken"; exit 1; }
  "$VENV/bin/python" -c "import siaga112, fastapi, panoramisk, pytest" \
    || { say "Python dependencies did not install"; exit 1; }
  printf '%s\n' "$digest" > "$stamp"
fi

# 2. PostgreSQL on 127.0.0.1:5432 (not for `make check`: WANT_PG=0).
WANT_PG=${WANT_PG:-1}
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if [ "$WANT_PG" = 1 ] && { ! command -v pg_isready >/dev/null || ! pg_up; }; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    ver=$(ls /etc/postgresql | sort -V | tail -n1)
    hba=/etc/postgresql/$ver/main/pg_hba.conf
    if ! grep -q 'siaga112-local' "$hba"; then
      # A development cluster of our own: trust loopback connections, as on the CI machines.
      say "allowing trusted loopback connections in $hba"
      as_root sed -i '1i host all all 127.0.0.1/32 trust # siaga112-local\nhost all all ::1/128 trust # siaga112-local' "$hba"
    fi
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  say "starting PostgreSQL $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { say "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1; }
fi

# 3. What the real-Asterisk tests and the local stack need: mmdebstrap builds the Asterisk
#    root (siaga112 pbx up), SIPp places and answers real SIP calls, espeak-ng (its Indonesian
#    voice) and sox build the prompts callers hear (siaga112.pbxconf.prompts).
if [ "$WANT_PBX" = 1 ]; then
  apt_install mmdebstrap sip-tester espeak-ng sox
fi

# 3b. The high-availability tier (several Asterisk nodes behind a SIP proxy; tests/e2e/test_nodes.py,
#     bench/takeover): Debian's kamailio, whose base package has the dispatcher module. The
#     sandbox starts its own Kamailio; the packaged service would take port 5060 on every
#     address, so it is never left enabled.
WANT_HA=${WANT_HA:-$WANT_PBX}
if [ "$WANT_HA" = 1 ] && ! dpkg -s kamailio >/dev/null 2>&1; then
  apt_install kamailio
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now kamailio >/dev/null 2>&1 || true
  fi
fi

# 4. The console's front-end files (Leaflet, the offline basemap) from the npm registry, pinned
#    by package-lock.json; reinstalled when the lockfile changes. Node is needed only here.
#    Debian's chromium runs the browser tests (Playwright's own browser download is never used).
WANT_CONSOLE=${WANT_CONSOLE:-1}
if [ "$WANT_CONSOLE" = 1 ]; then
  command -v npm >/dev/null || apt_install npm
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "installing the console's front-end packages (npm ci)"
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2
    touch node_modules/.package-lock.json
  fi
  if [ ! -f src/siaga112/console/static/vendor/leaflet/leaflet.js ] || \
     [ node_modules/.package-lock.json -nt src/siaga112/console/static/vendor/leaflet/leaflet.js ]; then
    scripts/vendor-assets.sh
  fi
  apt_install chromium
fi

# 5. The development database, created when missing, migrated to head.
if [ "$WANT_DEV_DB" = 1 ]; then
  "$VENV/bin/siaga112" db upgrade >/dev/null
fi
say "ready"
