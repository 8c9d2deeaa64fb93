#!/usr/bin/env bash
# The meta-RL results of the README (issue 15), as run on the 2-core development machine:
# two lanes of one thread each, so the two cores are never oversubscribed. Every run is
# resumable: re-running this script continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=".venv/bin/metabridge"
export OMP_NUM_THREADS=1
lane_a() {
  $MB rl experiment --name halfcheetah-vel --threads 1 --no-progress
  $MB rl experiment --name metaworld-reach --threads 1 --no-progress \
      --set '{"iterations": 20, "eval_every": 10, "checkpoint_every": 5}'
  # ablation: the exact Fisher (every rollout) instead of a quarter of them, 2D navigation
  $MB rl train --preset navigation-finn --out runs/rl/navigation_exact_fisher/maml-trpo-s0 --threads 1 \
      --no-progress --set '{"algorithm_kwargs": {"max_kl": 0.01, "fisher_subsample": 1.0}}' --resume \
    || $MB rl train --preset navigation-finn --out runs/rl/navigation_exact_fisher/maml-trpo-s0 --threads 1 \
      --no-progress --set '{"algorithm_kwargs": {"max_kl": 0.01, "fisher_subsample": 1.0}}'
}
lane_b() {
  while pgrep -f "rl experiment --name navigation" >/dev/null; do sleep 10; done
  $MB rl tradeoff --preset navigation-finn --seeds 0,1,2,3,4 --threads 1 --no-progress \
      --set '{"iterations": 40, "eval_every": 10, "checkpoint_every": 10}'
  $MB rl tradeoff --preset halfcheetah-vel-small --out bench/results/rl/tradeoff_halfcheetah_vel \
      --runs runs/rl/tradeoff_halfcheetah_vel --seeds 0,1,2,3,4 --threads 1 --no-progress \
      --set '{"iterations": 30, "eval_every": 10, "checkpoint_every": 10}'
}
# lane C (run after the two lanes above, or beside them): HalfCheetah-Vel at Finn's step sizes, and the
# per-method tuned fine-tuning step for the Gao-step runs
lane_c() {
  $MB rl experiment --name halfcheetah-vel --threads 1 --no-progress
  $MB rl experiment --name halfcheetah-vel-gao-steps --threads 1 --no-progress
}
if [[ -z "${1:-}" ]]; then
lane_a > logs/issue15_lane_a.log 2>&1 &
lane_b > logs/issue15_lane_b.log 2>&1 &
wait
fi
if [[ "${1:-}" == "c" ]]; then lane_c > logs/issue15_lane_c.log 2>&1; fi
