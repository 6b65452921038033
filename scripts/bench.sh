#!/usr/bin/env bash
# npm run bench [-- --quick | --only TEXT | --runs N | --json PATH]: the benchmarks.
#  1. planning (bench/main.ts): each case in its own child process so that its peak RSS is its own;
#  2. the daemon's incremental path (bench/daemon.ts; its real-kernel part needs root);
#  3. apply on a real node against the hand-written floor (bench/apply-kernel.ts; root);
#  4. the real agent process at 5,000 x 110 with the kube source (bench/daemon-scale.ts; root; ~4 min):
#     memory against the DaemonSet's limit, start-up, resync, pod events.
# Progress goes to stderr; Markdown tables for README to stdout. --quick runs the small planning cases only.
set -euo pipefail
cd "$(dirname "$0")/.."
node --import tsx bench/main.ts "$@"
for a in "$@"; do [ "$a" = "--quick" ] && exit 0; done
# The daemon part runs with the DaemonSet's NODE_OPTIONS (deploy/daemonset.yaml), as the agent does.
daemon_node_options="$(sed -n 's/^ *value: \(--max-semi-space-size=.*\)$/\1/p' deploy/daemonset.yaml | head -1)"
NODE_OPTIONS="$daemon_node_options" node --import tsx bench/daemon.ts
node --import tsx bench/apply-kernel.ts
node --import tsx bench/daemon-scale.ts
