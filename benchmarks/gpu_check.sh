#!/usr/bin/env bash
# The performance benchmarks on CUDA, in under 12 minutes on one GPU (run from the repository
# root; PYTHON defaults to python). Prints each benchmark's table, then an eval-determinism
# check. Each step has its own time limit so one slow step cannot eat the others' time.
#
#     bash benchmarks/gpu_check.sh [DATA_ROOT]
#
# The pack benchmark runs K = 32 trials one at a time and packed (issue 11: >= 10x on a GPU).
# The trial benchmark times whole epochs (training, validation, test) IBNN vs SM (issue 18:
# <= 5x at lam = -1 with global w, <= 15x at w_extent = 5 on a GPU).
set -u
PY=${PYTHON:-python}
ROOT=${1:-~/.cache/ibnn/data}
export PYTHONPATH=${PYTHONPATH:-$PWD}
step() {  # step SECONDS TITLE COMMAND...
  local limit=$1 title=$2
  shift 2
  echo "== $title"
  timeout "$limit" "$@" || echo "!! $title: exit $? (limit ${limit}s)"
}
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
step 60 "layer step (UCN(1,3), batch 128)" $PY benchmarks/layer_step.py --device cuda
step 90 "one epoch" $PY benchmarks/epoch.py --device cuda --data-root "$ROOT" --lam -2
step 120 "search space" $PY benchmarks/search_space.py --device cuda --data-root "$ROOT" \
  --threads 0 --repeats 10
step 150 "pack (K = 32)" $PY benchmarks/pack.py --device cuda --k 32 --data-root "$ROOT" \
  --max-train 2000 --max-test 1000 --epochs 1
step 240 "trial epochs (issue 18)" $PY benchmarks/trial.py --device cuda --data-root "$ROOT" \
  --modes single
step 30 "eval determinism on cuda" $PY - <<'PYEOF'
import torch
from ibnn import ucn
torch.manual_seed(0)
for kw in (dict(lam=-2.0), dict(lam=-2.0, w_extent=5), dict(lam=0.04)):
    model = ucn("ibnn", 1, 3, 1, 10, 28, **kw).cuda().eval()
    x = torch.rand(64, 1, 28, 28, device="cuda")
    with torch.no_grad():
        a, b, alone = model(x), model(x), model(x[5:6])
    print(kw, "repeat identical:", torch.equal(a, b),
          "batch independence |diff|:", f"{(a[5:6] - alone).abs().max().item():.1e}")
PYEOF
