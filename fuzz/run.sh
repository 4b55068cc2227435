#!/usr/bin/env bash
# Run the fuzz targets in fuzz/fuzz_targets for SECONDS each, one after the
# other (never in parallel: the build machines are shared).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default 60 s, every target
#
# CI's smoke (scripts/test.sh) is `fuzz/run.sh 10`: regressions replayed,
# then 10 s per target (~2.5 min for 12 targets, after the build). Long
# runs: see fuzz/LONG_RUN.md.
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc accept
# the -Z flags cargo-fuzz passes (-Zsanitizer=address, ...). Installs
# cargo-fuzz if it is missing. New corpus entries go to
# fuzz/target/corpus-work/<target> (not committed); the committed seeds in
# fuzz/corpus/<target> are read only. Exits non-zero if any target finds a
# crash, leak or timeout; the reproducer is in fuzz/artifacts/<target>/.
# Reproducers committed under fuzz/regressions/<target>/ are replayed first.
set -euo pipefail

secs="${1:-60}"
case "$secs" in
'' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
shift || true

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    for src in fuzz_targets/*.rs; do
        targets+=("$(basename "$src" .rs)")
    done
fi
for target in "${targets[@]}"; do
    if [ ! -f "fuzz_targets/$target.rs" ]; then
        echo "no such target: $target (see fuzz/fuzz_targets/)" >&2
        exit 2
    fi
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

# Build everything first so a compile error fails fast and is not mistaken
# for a crash.
cargo fuzz build

status=0
mkdir -p target/fuzz-logs
for target in "${targets[@]}"; do
    work="target/corpus-work/$target"
    log="target/fuzz-logs/$target.log"
    mkdir -p "$work" "corpus/$target"
    # Replay committed crash reproducers first: each must now pass.
    if compgen -G "regressions/$target/*" >/dev/null; then
        if ! cargo fuzz run "$target" regressions/"$target"/* >"$log" 2>&1; then
            status=1
            echo "!! $target: a committed regression fails again (log: fuzz/$log)"
            grep -E 'panicked|ERROR: |SUMMARY|Running: ' "$log" | head -n 20 || true
            continue
        fi
    fi
    echo "== $target: ${secs}s (log: fuzz/$log)"
    set +e
    cargo fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1 || true)"
    cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)"
    if [ "$rc" -ne 0 ]; then
        status=1
        echo "!! $target FAILED (exit $rc); reproducer in fuzz/artifacts/$target/:"
        grep -E 'panicked|ERROR: |SUMMARY|Test unit written' "$log" | head -n 20 || true
    else
        echo "   ok: ${execs:-?} execs, ${cov:-cov: ?}"
    fi
done
exit "$status"
