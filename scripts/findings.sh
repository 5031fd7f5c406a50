#!/usr/bin/env bash
# The platform's answer: every experiment of the paper at --protocol cpu on this machine, its
# results committed under findings/cpu/.
#
#   bash scripts/findings.sh           # run (or continue) the whole campaign, then the README
#   bash scripts/findings.sh --readme  # only regenerate findings/cpu/README.md and its tables
#
# Order: the Optuna search first (the replication sweeps take its confirmed best configuration,
# or lam = -1 where it confirmed none), then toy2d (its own 2-D set), robustness at lam in
# {-0.3, -1, -3}, data_fraction, expressivity, learning_speed, memorization and transfer, all on
# real Fashion-MNIST. Each sweep's working state (Tune's state, checkpoints, per-trial files)
# lives in FINDINGS_WORK (default ~/.cache/ibnn/findings-cpu, outside the repository, so a new
# checkout continues it); run the script again after an interruption and every sweep resumes
# where it stopped (a finished sweep is not run again). A finished sweep is compacted and its
# tables and sweep.json are copied to findings/cpu/<sweep>/; each run's wall time is appended
# to findings/cpu/wall_times.tsv. Environment: FINDINGS_PROTOCOL (default cpu; smoke checks the
# script itself in minutes), FINDINGS_OUT (default findings/<protocol>), FINDINGS_WORK (default
# ~/.cache/ibnn/findings-<name of FINDINGS_OUT>), FINDINGS_NEURON (the replication sweeps'
# neuron flags, e.g. "--lam -1", instead of the search's choice: the search is then not run)
# and FINDINGS_ONLY (the experiments to run, e.g. "data_fraction learning_speed"; default all).
# A second campaign at another neuron goes to a folder of its own, e.g.
#   FINDINGS_OUT=findings/cpu-lam-1 FINDINGS_NEURON="--lam -1" \
#   FINDINGS_ONLY="data_fraction expressivity learning_speed memorization" bash scripts/findings.sh
# (its SM trials repeat these; a folder of its own keeps the analysis from counting them twice).
set -euo pipefail
cd "$(dirname "$0")/.."
experiments="search toy2d robustness data_fraction expressivity learning_speed memorization transfer"
only=${FINDINGS_ONLY:-$experiments}
for e in $only; do  # refused before any work
  case " $experiments " in
    *" $e "*) ;;
    *) echo "[findings] FINDINGS_ONLY: unknown experiment '$e' (one of: $experiments)" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
protocol=${FINDINGS_PROTOCOL:-cpu}
out=${FINDINGS_OUT:-findings/$protocol}
work=${FINDINGS_WORK:-$HOME/.cache/ibnn/findings-$(basename "$out")}
py=.venv/bin/python
mkdir -p "$work" "$out"
times="$out/wall_times.tsv"
[ -f "$times" ] || printf 'sweep\tstarted_utc\tseconds\texit\n' > "$times"

say() { printf '[findings] %s\n' "$*"; }

# finished SWEEP: whether the committed copy of SWEEP records a finished run.
finished() {
  [ -f "$out/$1/sweep.json" ] && "$py" - "$out/$1/sweep.json" <<'EOF'
import json, sys
raise SystemExit(0 if json.load(open(sys.argv[1])).get("status") == "finished" else 1)
EOF
}

# publish SWEEP: compact the finished sweep in the work folder and copy what is committed.
publish() {
  "$py" -m ibnn.sweep compact "$work/$1" >/dev/null
  rm -rf "${out:?}/$1.tmp" && mkdir -p "$out/$1.tmp"
  cp "$work/$1/sweep.json" "$out/$1.tmp/"
  for table in $("$py" -c 'from ibnn.results import TABLES; print(*TABLES)'); do
    if [ -d "$work/$1/$table" ]; then cp -r "$work/$1/$table" "$out/$1.tmp/"; fi
  done
  rm -rf "${out:?}/$1" && mv "$out/$1.tmp" "$out/$1"
}

# sweep SWEEP SCRIPT ARGS...: run (or resume) one experiment unless it is already published or
# not in FINDINGS_ONLY.
sweep() {
  local name=$1 script=$2
  shift 2
  case " $only " in *" $script "*) ;; *) return 0 ;; esac
  if finished "$name"; then
    say "$name: finished (findings copy), skipped"
    return 0
  fi
  local resume=()
  [ -f "$work/$name/sweep.json" ] && resume=(--resume)
  say "$name: sweeps/$script.py --protocol $protocol $* ${resume[*]}"
  local start rc=0
  start=$(date +%s)
  "$py" "sweeps/$script.py" --protocol "$protocol" --storage "$work" --name "$name" "$@" \
    "${resume[@]}" || rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$(date -u -d "@$start" +%FT%TZ)" \
    "$(($(date +%s) - start))" "$rc" >> "$times"
  case $rc in
    0 | 1) publish "$name"; say "$name: done (exit $rc)" ;;
    130) say "$name: interrupted; run bash scripts/findings.sh again to continue"; exit 130 ;;
    *) say "$name: the sweep refused to run or failed (exit $rc); see above"; exit "$rc" ;;
  esac
}

# The replication sweeps' neuron: FINDINGS_NEURON if set, else the search's confirmed choice
# (read from the committed copy, so a new checkout makes the same choice), else lam = -1.
neuron() {
  if [ -n "${FINDINGS_NEURON:-}" ]; then
    echo "$FINDINGS_NEURON"
  elif "$py" -c "from ibnn.sweep.search.choice import load_search_choice as f; f('$out/search_fmnist')" \
    >/dev/null 2>&1; then
    echo "--from-search $out/search_fmnist"
  else
    echo "--lam -1"
  fi
}

if [ "${1:-}" != "--readme" ]; then
  [ -n "${FINDINGS_NEURON:-}" ] || sweep search_fmnist search --dataset fmnist
  read -r -a chosen <<< "$(neuron)"
  say "replication neuron: ${chosen[*]}"
  sweep toy2d toy2d
  sweep robustness_fmnist robustness --dataset fmnist --axis lam=-0.3,-1,-3
  sweep data_fraction_fmnist data_fraction --dataset fmnist "${chosen[@]}"
  sweep expressivity_fmnist expressivity --dataset fmnist "${chosen[@]}"
  sweep learning_speed_fmnist learning_speed --dataset fmnist "${chosen[@]}"
  sweep memorization_fmnist memorization --dataset fmnist "${chosen[@]}"
  sweep transfer_fmnist transfer --dataset fmnist
fi

say "analysis and README"
"$py" -m analysis "$out" --out "$work/dashboard.html" --markdown "$out/tables.md"
"$py" scripts/findings_readme.py "$out"
say "done: $out/README.md (dashboard: $work/dashboard.html)"
