#!/usr/bin/env bash
# Fuzzes the wire protocol and lohar's connection handling with cargo-fuzz
# (libFuzzer), each target for a bounded time, and prints the executions.
#
#   scripts/fuzz.sh [seconds-per-target]      # default 60
#   FUZZ_TARGETS="lohar_conn" scripts/fuzz.sh 600
#
# Targets (fuzz/fuzz_targets/):
#   decode      every decoder of bhatti-proto on arbitrary bytes: the sync
#               and async frame readers and try_parse must find the same
#               frames in a stream and stop at the same point; every JSON
#               message and the RESIZE/EXIT payloads.
#   lohar_conn  lohar's real server in process (auth, first-frame dispatch,
#               the handlers' payload decoding and validation, the frame
#               reader), one Unix-socket connection per input, in a scratch
#               working directory. Inputs whose request would start a process
#               or touch a path outside that directory are skipped
#               (crates/lohar/tests/fuzz_input/mod.rs).
#
# Needs: a C++ compiler (libfuzzer-sys builds libFuzzer; installed with
# apt-get when missing and running as root), cargo-fuzz (installed with
# `cargo install cargo-fuzz --locked` when missing), and nightly Rust: the
# `nightly` rustup toolchain when installed (with AddressSanitizer), else the
# pinned stable with RUSTC_BOOTSTRAP=1 and no sanitizer. FUZZ_SANITIZER=none
# drops AddressSanitizer on nightly too (faster; the code is Rust, ASan only
# watches the unsafe blocks and libc).
#
# The corpus grows in fuzz/corpus/<target> (git-ignored), seeded from
# fuzz/seeds/<target>; crashes land in fuzz/artifacts/<target> and make the
# script exit 1. Reproduce one with
#   cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/<file>
# A crash found here is a bug in the real code: fix it and add the input
# to the stable smoke tests (crates/lohar/tests/frame_fuzz_smoke.rs,
# crates/proto/tests/fuzz_smoke.rs), which `cargo test` runs in seconds.
# Runs under `nice -n 10`; not part of CI (too slow).
set -euo pipefail

secs=${1:-60}
targets=${FUZZ_TARGETS:-"decode lohar_conn"}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

if ! command -v c++ >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y g++
    else
        echo "fuzz.sh: a C++ compiler is needed (apt-get install g++)" >&2
        exit 2
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
    sanitizer=(--sanitizer "${FUZZ_SANITIZER:-address}")
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
    sanitizer=(--sanitizer none)
fi

status=0
total=0
summary=""
for t in $targets; do
    mkdir -p "corpus/$t" target/fuzz-logs
    # Absolute paths: lohar_conn changes its working directory.
    seeds=()
    [ -d "seeds/$t" ] && seeds=("$PWD/seeds/$t")
    dict=()
    [ -f "$t.dict" ] && dict=("-dict=$PWD/$t.dict")
    log="target/fuzz-logs/$t.log"
    echo "== $t: ${secs}s"
    nice -n 10 "${fuzz[@]}" build "${sanitizer[@]}" "$t"
    if nice -n 10 "${fuzz[@]}" run "${sanitizer[@]}" "$t" "$PWD/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -timeout=60 -print_final_stats=1 "${dict[@]}" \
        >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see fuzz/$log, fuzz/artifacts/$t)"
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=${execs:-0}
    grep -E '^#[0-9]+ +DONE|^Done ' "$log" || tail -n 20 "$log"
    total=$((total + execs))
    summary+="$t: $execs execs, $result"$'\n'
done
printf '%s' "$summary"
echo "total: $total execs"
exit $status
