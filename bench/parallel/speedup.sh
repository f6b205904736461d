#!/usr/bin/env bash
# Real data-parallel speedup on this machine (issue 9, "Fast"): the training step of
# bench/parallel/speedup.ms (784-1024-1024-10 MLP, batch 512, SGD) timed
#   - on one device with one thread (`--threads 1`): the baseline;
#   - on `--devices cpu:2` with two threads (one per virtual device);
#   - on two MPI processes with one thread each, when an `ms` built with `--features mpi`
#     is given as the second argument;
#   - on one device with two threads, for reference (what the threads give without a mesh).
# The configurations run interleaved, ROUNDS times (default 5); the table gives each one's
# median steps per second and its ratio to the baseline.
# Usage: bash bench/parallel/speedup.sh [path/to/ms] [path/to/ms-with-mpi]
set -euo pipefail
cd "$(dirname "$0")/../.."
ms=${1:-target/release/ms}
ms_mpi=${2:-}
rounds=${ROUNDS:-5}
steps=${STEPS:-40}
script=bench/parallel/speedup.ms
names=("one device, 1 thread" "cpu:2, 1 thread each" "one device, 2 threads")
cmds=("$ms --threads 1 $script --steps $steps"
      "$ms --threads 2 --devices cpu:2 $script --steps $steps"
      "$ms --threads 2 $script --steps $steps")
if [ -n "$ms_mpi" ]; then
    names+=("2 MPI processes, 1 thread each")
    cmds+=("mpirun --allow-run-as-root -np 2 $ms_mpi --threads 1 --devices mpi $script --steps $steps")
fi
declare -A rates
for _ in $(seq "$rounds"); do
    for i in "${!cmds[@]}"; do
        r=$(${cmds[$i]} 2>&1 | awk '/^steps\/s/ {print $2}')
        rates[$i]="${rates[$i]:-} $r"
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
base=$(echo "${rates[0]}" | median)
echo "| configuration | steps/s (median of $rounds) | ratio to one thread |"
echo "|---|---|---|"
for i in "${!cmds[@]}"; do
    m=$(echo "${rates[$i]}" | median)
    printf '| %s | %.1f | %.2f× |\n' "${names[$i]}" "$m" "$(echo "$m / $base" | bc -l)"
done
