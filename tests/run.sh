#!/usr/bin/env bash
# Runs every AlignHub test: starts a throwaway PostgreSQL on loopback (for the PostgreSQL-mode tests),
# runs `dotnet test AlignHub.sln`, stops PostgreSQL, and prints "N passed, N failed, N skipped".
# Needs the .NET 10 SDK; installs the PostgreSQL server and Chromium with apt-get when missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

find_pg_bin() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
pgbin=$(find_pg_bin || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "tests/run.sh: installing PostgreSQL (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pgbin=$(find_pg_bin)
  else
    echo "tests/run.sh: PostgreSQL binaries (initdb, pg_ctl) not found; install the postgresql package" >&2
    exit 2
  fi
fi

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "tests/run.sh: installing Chromium for the browser tests (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "tests/run.sh: /usr/bin/chromium missing: the browser tests will be skipped (apt-get install chromium)" >&2
  fi
fi

if ! /usr/bin/python3 -c "import torch" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "tests/run.sh: installing Debian's python3-torch for the RL step oracle (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torch >/dev/null
  else
    echo "tests/run.sh: Debian's python3-torch is missing: the RL step oracle test will fail (apt-get install python3-torch)" >&2
  fi
fi

pgdir=$(mktemp -d /tmp/alignhub-pg.XXXXXX)
chmod 755 "$pgdir"
port=$(( 20000 + RANDOM % 20000 ))
as_pg() {
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$pgdir"; (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
pg_user=$([ "$(id -u)" = 0 ] && echo postgres || id -un)
as_pg "$pgbin/initdb" -D "$pgdir/data" -A trust -U "$pg_user" -E UTF8 --locale=C.UTF-8 >"$pgdir/initdb.log" 2>&1 \
  || { cat "$pgdir/initdb.log"; exit 1; }
as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $pgdir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null
stop_pg() { as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
trap stop_pg EXIT
export ALIGNHUB_TEST_POSTGRES="Host=127.0.0.1;Port=$port;Username=$pg_user;Database=postgres"
export ALIGNHUB_TEST_PGBIN="$pgbin"   # the fault drills start clusters of their own, to restart them
echo "tests/run.sh: PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"

log=$(mktemp /tmp/alignhub-test.XXXXXX.log)
set +e
# Build the whole solution first: the end-to-end tests start the built AlignHub.Api as processes.
if ! dotnet build "$root/AlignHub.sln" >"$log.build" 2>&1; then
  grep -E "error|Error" "$log.build" | head -n 40 || tail -n 40 "$log.build"
  echo "tests/run.sh: the build failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1
fi
grep -E "GLIBCXX|Warn|warn" "$log.build" | sort -u | head -n 5 || true
dotnet test "$root/AlignHub.sln" --no-build "$@" 2>&1 | tee "$log"
code=${PIPESTATUS[0]}
set -e
# dotnet test prints one summary line per test assembly: add them up.
awk '
  /(Passed|Failed)!  - Failed:/ {
    for (i = 1; i <= NF; i++) { gsub(",", "", $(i+1)); if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) }
    seen = 1
  }
  END { if (!seen) { p = 0; f = 0; s = 0 } printf "%d passed, %d failed, %d skipped\n", p, f, s }
' "$log"
if [ "$code" = 0 ] && ! grep -qE "(Passed|Failed)!  - Failed:" "$log"; then echo "tests/run.sh: no tests ran" >&2; exit 1; fi
exit "$code"
