#!/usr/bin/env bash
# Runs the foundation benchmark (release build of the real server binary) and
# prints the figures quoted in README.md. Takes about two minutes on 2 cores.
#   BENCH_RUNS=5 benches/run.sh          more runs
#   BENCH_BATCH=50000 benches/run.sh     larger import batches
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -m)"
cargo bench --bench import
