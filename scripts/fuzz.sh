#!/usr/bin/env bash
# Build and run the fuzz targets of fuzz/ one after another, each for N seconds (default 60),
# one process, with memory limits so that blow-ups count as crashes. Corpora live in
# fuzz/corpus/<target> (the committed seed-* files, plus what the fuzzer finds: ignored by
# git). Crashes are written to fuzz/artifacts/<target>/. Prints per target: executions,
# final coverage (cov, ft), crashes. Exit status 1 if any target crashed.
#
#   scripts/fuzz.sh [seconds] [target...]       e.g. scripts/fuzz.sh 600 xml_stream
set -euo pipefail

secs="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(xml_stream forward_wire stream_negotiation pwsh domain_jid clixml)
fi

cargo +nightly fuzz build

mkdir -p logs
summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    log="logs/$t.log"
    echo "== $t: ${secs}s" >&2
    set +e
    cargo +nightly fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=512 -malloc_limit_mb=64 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')
    after=$(find "artifacts/$t" -type f | wc -l)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="? (exit $rc, see fuzz/$log)"; fi
    if [ "$rc" -ne 0 ]; then failed=1; fi
    summary+=("$(printf '%-20s execs %-12s cov %-6s ft %-7s crashes %s' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes")")
done
printf '%s\n' "${summary[@]}"
exit "$failed"
