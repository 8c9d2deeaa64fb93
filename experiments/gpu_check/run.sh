#!/usr/bin/env bash
# The run file of this experiment is the prepared GPU check; it writes into experiments/gpu_check/results/.
set -euo pipefail
exec bash "$(cd "$(dirname "$0")/../.." && pwd)/scripts/gpu_check.sh" "$@"
