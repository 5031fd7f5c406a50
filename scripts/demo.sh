#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), runs a small real sweep on a local Ray instance and
# writes the dashboard:
#   - Fashion-MNIST from Debian's dataset-fashion-mnist (real images, no download);
#   - sweeps/expressivity.py, reduced: UCN(1, C) for two widths C, SM and IBNN (lam = -1),
#     5 seeds each (the fewest for a calibrated SM-vs-IBNN interval), 3,000 training and
#     2,000 test images, one warm-up and 4 epochs;
#   - Parquet results under results/demo/, then results/demo/dashboard.html.
# Environment: DEMO_STORAGE (default results/demo), DEMO_SEEDS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
storage=${DEMO_STORAGE:-results/demo}
seeds=${DEMO_SEEDS:-5}
resume=()
if [ -f "$storage/expressivity_fmnist/sweep.json" ]; then
  resume=(--resume)   # a second run continues (or re-reads) the same sweep
fi
echo "[demo] sweep: expressivity on Fashion-MNIST, $seeds seeds, results in $storage"
.venv/bin/python sweeps/expressivity.py --dataset fmnist --smoke --seeds "$seeds" \
  --ibnn-seeds "$seeds" --epochs 4 --max-train 3000 --max-test 2000 \
  --storage "$storage" "${resume[@]}"
echo "[demo] dashboard"
.venv/bin/python -m analysis "$storage" --out "$storage/dashboard.html"
