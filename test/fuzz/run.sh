#!/usr/bin/env bash
# run.sh TARGET SECONDS -- run one fuzz target (built by make) for SECONDS.
#
# Starts from the committed seeds (corpus/TARGET, read only) and a work
# corpus under build/ that keeps what the fuzzer finds between runs.  A
# fixed -seed makes the mutation sequence repeatable.  Sanitizer options:
# stop at the first error, report leaks.  A crash, a sanitizer report, a
# leak or a failed invariant exits non-zero and leaves the input in
# build/crashes/.  The last lines are libFuzzer's final stats
# (stat::number_of_executed_units etc.).
set -euo pipefail
cd "$(dirname "$0")"
target=$1
seconds=$2
work=build/corpus/$target
mkdir -p "$work" build/crashes
dict=()
[ -f "dict/$target.dict" ] && dict=(-dict="dict/$target.dict")
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
echo "== $target: ${seconds}s"
exec "build/$target" -seed=20260630 -max_total_time="$seconds" -timeout=10 \
	-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="build/crashes/$target-" \
	"${dict[@]}" "$work" "corpus/$target"
