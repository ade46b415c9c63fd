#!/usr/bin/env bash
# Runs every fuzz target for a bounded time on stable Rust (no sanitizer, `-s none`) and fails if
# any of them crashes. Works from any directory, as root, with no standard input.
#
#   FUZZ_SECONDS_SEGMENT  seconds for `segment`                            (default 60)
#   FUZZ_SECONDS_OTHERS   seconds for `segment_structured`, `lz4_batch`,
#                         `ffi` (the C API driven by a script of calls)    (default 20)
#   FUZZ_TARGETS          which targets to run, space-separated            (default: all)
#
# New inputs the fuzzer finds go to a temporary folder, so the committed corpus stays as it is.
# A crash input lands in fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/ so that
# `cargo test -p missive-log --test fuzz_corpus` replays it from then on.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$fuzz_dir"
export PATH="$HOME/.cargo/bin:$PATH"
# The fuzz crate builds with its own flags into fuzz/target; a shared target dir would only churn.
unset CARGO_TARGET_DIR

seconds_segment=${FUZZ_SECONDS_SEGMENT:-60}
seconds_others=${FUZZ_SECONDS_OTHERS:-20}
targets=${FUZZ_TARGETS:-segment segment_structured lz4_batch ffi}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked </dev/null
fi

echo "== building the fuzz targets (stable, -s none)"
cargo fuzz build --fuzz-dir "$fuzz_dir" -s none </dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
total_execs=0
for target in $targets; do
    seconds=$seconds_others
    if [ "$target" = segment ]; then seconds=$seconds_segment; fi
    # The first folder receives new inputs; the committed ones only seed the run.
    corpora=("$work/$target")
    for seed in "corpus/$target" "regressions/$target"; do
        if [ -d "$seed" ]; then corpora+=("$fuzz_dir/$seed"); fi
    done
    mkdir -p "$work/$target"
    log="$work/$target.log"
    echo "== fuzzing $target for ${seconds}s"
    status=0
    cargo fuzz run --fuzz-dir "$fuzz_dir" -s none "$target" "${corpora[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 </dev/null >"$log" 2>&1 ||
        status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log"
        echo "!! $target crashed (exit $status); its input is in $fuzz_dir/artifacts/$target/"
        failed+=("$target")
    fi
    summary+=("$(printf '%-20s %12s execs %9s exec/s  %s' "$target" "${execs:-?}" "${rate:-?}" \
        "$([ "$status" -eq 0 ] && echo ok || echo CRASH)")")
    total_execs=$((total_execs + ${execs:-0}))
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
echo "total: $total_execs execs"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "!! crashed: ${failed[*]}"
    exit 1
fi
