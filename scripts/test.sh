#!/usr/bin/env bash
# The test command (npm test): type-check, then every *.test.ts under the source folders with node:test.
# Kernel tests need root (network namespaces, wireguard-go); CI runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json --noEmit
mapfile -t files < <(find core planner adapters cmd property-tests testing deploy -name '*.test.ts' 2>/dev/null | sort)
if [ "${#files[@]}" -eq 0 ]; then echo "no test files found" >&2; exit 1; fi
exec node --import tsx --test --test-reporter=spec "${files[@]}"
