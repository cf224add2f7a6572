#!/usr/bin/env bash
# Runs a command against a live AlignHub (Release build, roles api) on a throwaway PostgreSQL 15 on loopback, with
# PostgreSQL's default durability settings. The command sees ALIGNHUB_URL and ALIGNHUB_KEY (an admin key). Example:
#   bench/with-postgres.sh dotnet run -c Release --project bench/AlignHub.Bench -- annotation-latency '$ALIGNHUB_URL' 2000 60
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
pgbin=$(command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)" || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=$(mktemp -d /tmp/alignhub-bench.XXXXXX); chmod 755 "$work"
port=$(( 20000 + RANDOM % 20000 )); api_port=$(( port + 1 ))
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$work/pg" 2>/dev/null || true; (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
pg_user=$([ "$(id -u)" = 0 ] && echo postgres || id -un)
mkdir -p "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg/data" -A trust -U "$pg_user" -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $work/pg -c max_connections=300 ${BENCH_PG_STATS:+-c shared_preload_libraries=pg_stat_statements}" start >/dev/null
api_pid=
cleanup() { [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null; as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
dotnet build -c Release "$root/Api/AlignHub.Api" -v q -nologo >/dev/null
dotnet build -c Release "$root/bench/AlignHub.Bench" -v q -nologo >/dev/null
ConnectionStrings__AlignHub="Host=127.0.0.1;Port=$port;Username=$pg_user;Database=postgres;Maximum Pool Size=100${BENCH_PG_EXTRA:-}" \
AlignHub__Roles=api AlignHub__DataDir="$work/data" AlignHub__AdminKey=ahk-bench-admin-key ASPNETCORE_URLS="http://127.0.0.1:$api_port" Logging__LogLevel__Default=Warning \
  dotnet "$root/Api/AlignHub.Api/bin/Release/net10.0/AlignHub.Api.dll" >"${BENCH_API_LOG:-$work/api.log}" 2>&1 &
api_pid=$!
export ALIGNHUB_URL="http://127.0.0.1:$api_port" ALIGNHUB_KEY=ahk-bench-admin-key
for _ in $(seq 1 120); do curl -fs "$ALIGNHUB_URL/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fs "$ALIGNHUB_URL/readyz" >/dev/null || { tail -n 30 "$work/api.log"; exit 1; }
eval "$@"
if [ -n "${BENCH_PG_STATS:-}" ]; then  # BENCH_PG_STATS=1: the statements that took the most server time
  psql=$pgbin/psql; [ -x "$psql" ] || psql=psql
  "$psql" -h 127.0.0.1 -p $port -U "$pg_user" -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  "$psql" -h 127.0.0.1 -p $port -U "$pg_user" -d postgres -c "SELECT calls, round(total_exec_time::numeric, 0) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms, round(max_exec_time::numeric, 1) AS max_ms, left(regexp_replace(query, '\s+', ' ', 'g'), 150) AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
fi
