#!/usr/bin/env bash
# The online trainer's step cost in this build and in an older one (default: the last commit before issue 21's
# trainer), on the same batches: builds bench/AlignHub.Bench/RlStepCost.cs in a worktree of the old commit too, then
# runs both, alternating, ROUNDS times. Usage: bench/rl/step-cost.sh [OLD_COMMIT] [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
old=${1:-710d6f7}
steps=${2:-60}
rounds=${3:-2}
tree=$(mktemp -d /tmp/alignhub-old.XXXXXX)
git worktree add --detach "$tree" "$old" >/dev/null
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
cp bench/AlignHub.Bench/RlStepCost.cs "$tree/bench/AlignHub.Bench/"
grep -q '"rl-step-cost"' "$tree/bench/AlignHub.Bench/Program.cs" ||
  sed -i 's|^    case "frontier": RlBenchmarks.Frontier(); return;|&\n    case "rl-step-cost": RlStepCost.Run(args.Length > 1 ? int.Parse(args[1]) : 60); return;|' "$tree/bench/AlignHub.Bench/Program.cs"
(cd "$tree/bench/AlignHub.Bench" && dotnet build -c Release >/dev/null)
(cd bench/AlignHub.Bench && dotnet build -c Release >/dev/null)
for r in $(seq "$rounds"); do
  echo "== round $r: old ($old)"; (cd "$tree/bench/AlignHub.Bench" && dotnet bin/Release/net10.0/AlignHub.Bench.dll rl-step-cost "$steps")
  echo "== round $r: new ($(git rev-parse --short HEAD))"; (cd bench/AlignHub.Bench && dotnet bin/Release/net10.0/AlignHub.Bench.dll rl-step-cost "$steps")
done
