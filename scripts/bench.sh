#!/usr/bin/env bash
# npm run bench [-- --quick | --only TEXT | --json PATH]: the planning benchmarks (bench/main.ts).
# Each case runs in its own child process so that its peak RSS is its own. Progress goes to stderr,
# the Markdown table for README to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node --import tsx bench/main.ts "$@"
