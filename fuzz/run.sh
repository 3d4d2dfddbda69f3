#!/usr/bin/env bash
# Runs one cargo-fuzz target for a bounded time on its seed corpus (needs the nightly toolchain
# and `cargo install cargo-fuzz`). Usage: fuzz/run.sh TARGET [SECONDS=600]
# Findings land in fuzz/artifacts/TARGET/; each gets a regression test in the crate it hits.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
mkdir -p "corpus/$target"
# A scratch copy of the corpus grows during the run; the seeds in the repo stay small.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "corpus/$target/." "$work/"
exec cargo +nightly fuzz run "$target" "$work" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
