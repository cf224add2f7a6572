#!/usr/bin/env bash
# Fault drills at full size (issue 16), on PostgreSQL with several worker processes; CI runs the same tests at a short size.
#   1 api + 3 workers, 30 mixed jobs (SFT, DPO, reward model, GRPO), 3 SIGKILLs and one SIGTERM: every job succeeds, every
#     step's metrics once, every checkpoint loads, each interrupted job's weights equal an uninterrupted run's;
#   4 workers start 200 short jobs: jobs started and finished per second;
#   jobs routed by device queue;
#   PostgreSQL stopped and started under 20 API clients and a training job (503 + Retry-After, nothing lost);
#   checkpoints on a 2.5 MB tmpfs (needs root): the job fails clearly and the previous checkpoint loads.
# Sizes: DRILL_JOBS (30), DRILL_KILLS (3), DRILL_WORKERS (3), DRILL_STARTS (200). Figures go to bench/drill-results.txt
# (or DRILL_OUT) and the test output. Usage: bench/drill.sh [extra dotnet test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DRILL_OUT:-$(pwd)/bench/drill-results.txt}
{ echo "# bench/drill.sh, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores"; } >> "$out"
export ALIGNHUB_DRILL_JOBS=${DRILL_JOBS:-30} ALIGNHUB_DRILL_KILLS=${DRILL_KILLS:-3} ALIGNHUB_DRILL_WORKERS=${DRILL_WORKERS:-3} \
  ALIGNHUB_DRILL_STARTS=${DRILL_STARTS:-200} ALIGNHUB_DRILL_OUT=$out
tests/run.sh --filter "FullyQualifiedName~DrillTests|FullyQualifiedName~OutageTests|FullyQualifiedName~DiskFullTests" "$@"
echo "drill figures: $out"
tail -n 8 "$out"
