#!/usr/bin/env bash
# Runs every fuzz target in turn, one process at a time at the lowest priority, for SECONDS each
# (default 60), growing fuzz/corpus-grown/<target>/ from the committed seeds in
# fuzz/corpus/<target>/. Prints one line per target: executions, seconds, coverage, crashes.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   (needs cargo-fuzz; see docs/fuzzing.md)
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1 # cargo-fuzz passes nightly-only flags; stable rustc accepts them with this
mkdir -p logs
for t in "${targets[@]}"; do
    mkdir -p "corpus-grown/$t" "artifacts/$t"
    dict=()
    [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
    # -jobs=1 -workers=1: one fuzzing process (its output goes to fuzz-0.log), nothing parallel.
    status=0
    nice -n 19 cargo fuzz run -O "$t" "corpus-grown/$t" "corpus/$t" -- \
        -jobs=1 -workers=1 -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "${dict[@]}" >/dev/null 2>&1 || status=$?
    mv fuzz-0.log "logs/$t.log" 2>/dev/null || true
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1 || true)
    cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 || true)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    echo "$t execs=${execs:-?} secs=$secs ${cov:-cov: ?} artifacts=$crashes exit=$status"
done
