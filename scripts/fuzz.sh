#!/usr/bin/env bash
# Fuzzes every parser of flannel-rs (the cargo-fuzz targets in fuzz/, see docs/fuzzing.md):
# installs cargo-fuzz if it is missing, builds all targets, then runs each for FUZZ_SECONDS
# (default 30) starting from its seed corpus in fuzz/seeds/<target>. Fails on the first target
# that crashes (a panic, a failed assertion, a timeout, or running out of memory) after
# printing the path of the input that did it; the rest are still run.
#
#   FUZZ_SECONDS=300 scripts/fuzz.sh               # longer runs
#   FUZZ_TARGETS="net_conf netlink" scripts/fuzz.sh  # some targets only
#
# cargo-fuzz passes flags only nightly rustc takes; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take them. No sanitizer: the code is safe Rust (`unsafe_code = "deny"`), panics and
# assertions are what is looked for, and uninstrumented code runs about twice as fast.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

build_flags=(--release --debug-assertions --sanitizer none)
cargo fuzz build "${build_flags[@]}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin="target/$triple/release"
read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"

work="$(mktemp -d /tmp/flannel-fuzz.XXXXXX)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "artifacts/$t"
    log="$work/$t.log"
    echo "fuzz: $t for ${FUZZ_SECONDS}s (seeds: fuzz/seeds/$t)"
    # New inputs go to the first (scratch) directory; the committed seeds stay as they are.
    if "$bin/$t" "$work/corpus/$t" "seeds/$t" \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$PWD/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
        echo "fuzz: $t ok: ${runs:-?} inputs, corpus $(find "$work/corpus/$t" -type f | wc -l) new"
    else
        failed+=("$t")
        echo "fuzz: $t FAILED; the end of its log:"
        tail -n 40 "$log"
        sed -n 's/.*Test unit written to /fuzz: crashing input: /p' "$log"
        echo "fuzz: reproduce with: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} $t <input>)"
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${FUZZ_SECONDS}s each without a crash"
