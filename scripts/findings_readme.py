"""Writes ``findings/<protocol>/README.md`` from a campaign's committed results.

    python scripts/findings_readme.py findings/cpu

Every number in the README comes from a generated table: the protocol (``ibnn.sweep.protocols``),
the claims and the figures' medians (``tables.md``, written by ``python -m analysis DIR
--markdown``, pasted verbatim), the trials per experiment (read from the Parquet tables), the
wall time of each sweep run (``wall_times.tsv``, appended by ``scripts/findings.sh``), the code
and versions (each sweep's ``sweep.json``) and the paper-size plan (the ``paper`` protocol's
trial counts times the cost per epoch measured here). The reading of the verdicts is written by
hand in ``reading.md`` beside it and included as it stands.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.failures import at_chance
from analysis.load import SweepData, load_storage
from analysis.markdown import markdown_table
from analysis.tidy import trial_table
from ibnn.results.schema import FAILED_STATUSES
from ibnn.sweep import build_plan, parse_args
from ibnn.sweep.cluster.provenance import PACKAGES
from ibnn.sweep.protocols import SIZED, get_protocol, protocol_table
from ibnn.sweep.search.choice import load_search_choice
from ibnn.sweep.trials.packing import pack_variants
from ibnn.trial import TrialConfig

REPO = Path(__file__).resolve().parents[1]
# The campaign's experiments in the order scripts/findings.sh runs them.
EXPERIMENTS = (
    "search",
    "toy2d",
    "robustness",
    "data_fraction",
    "expressivity",
    "learning_speed",
    "memorization",
    "transfer",
)
# Images a trial of the paper protocol passes per epoch on Fashion-MNIST: 54,000 training,
# 6,000 validation and 10,000 test images.
PAPER_IMAGES = {"train": 54_000, "val": 6_000, "test": 10_000}
# Assumed GPU cost (unmeasured here: no GPU was lent): an IBNN training step of UCN(1,3) at
# batch 128 on one H200 of 9.6 ms and an SM step of 1.4 ms (docs: the design brief's prototype),
# evaluation at half a training step per image.
GPU_STEP_S = {"sm": 1.4e-3, "ibnn": 9.6e-3}
# Sweeps whose trials all train UCN(1,3) on the whole capped training set: their epochs measure
# the cost per image and epoch.
COST_KINDS = ("robustness", "learning_speed", "memorization")


def load_spec(name: str) -> Any:
    """The SweepSpec of sweeps/<name>.py."""
    path = REPO / "sweeps" / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(f"sweeps_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SPEC


def _hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def protocol_section(specs: list[Any]) -> str:
    defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig) if f.name in SIZED}
    return protocol_table(specs, defaults)


def _trials(sweep: SweepData) -> pd.DataFrame:
    if sweep.epochs.empty:
        return pd.DataFrame()
    return trial_table(sweep.epochs, sweep.trials if not sweep.trials.empty else None)


def wall_times(out: Path) -> dict[str, tuple[float, int]]:
    """sweep -> (seconds over all its runs, number of runs), from wall_times.tsv."""
    path = out / "wall_times.tsv"
    if not path.exists():
        return {}
    total: dict[str, tuple[float, int]] = {}
    with path.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            s, n = total.get(row["sweep"], (0.0, 0))
            total[row["sweep"]] = (s + float(row["seconds"]), n + 1)
    return total


def _in_order(sweeps: list[SweepData]) -> list[SweepData]:
    """The sweeps in the order scripts/findings.sh runs them."""
    order = {kind: i for i, kind in enumerate(EXPERIMENTS)}
    return sorted(sweeps, key=lambda s: (order.get(s.kind, len(order)), s.name))


def experiments_section(sweeps: list[SweepData], times: dict[str, tuple[float, int]]) -> str:
    """One row per sweep: its status, trials, failures, trials at chance and wall time."""
    rows = []
    for s in _in_order(sweeps):
        t = _trials(s)
        status = t["status"] if "status" in t else pd.Series(dtype=str)
        failed = int(status.isin(FAILED_STATUSES).sum())
        chance = at_chance(t) if not t.empty else pd.Series(dtype=bool)
        by_arm = (
            ", ".join(f"{a} {int(n)}" for a, n in t[chance].groupby("arm").size().items())
            if chance.any()
            else "0"
        )
        seconds, runs = times.get(s.name, (math.nan, 0))
        rows.append(
            [
                s.name,
                str(s.meta.get("status", "?")),
                str(len(t)),
                str(s.meta.get("expected_trials", "?")),
                str(failed),
                by_arm,
                "-" if runs == 0 else f"{_hours(seconds)} ({runs} run{'s' * (runs > 1)})",
            ]
        )
    head = ["sweep", "status", "trials", "expected", "failed", "at chance", "wall time"]
    return markdown_table(head, rows, right={2, 3, 4})


def provenance_section(sweeps: list[SweepData]) -> str:
    """The commit and versions each sweep started with, and those of its resumes."""
    rows = []
    for s in _in_order(sweeps):
        resumed = [r.get("provenance", {}) for r in s.meta.get("resumed", [])]
        for i, p in enumerate([s.meta.get("provenance", {}), *resumed]):
            git = p.get("git") or {}
            versions = ", ".join(
                f"{k} {p[k]}" for k in ("python", *PACKAGES) if p.get(k) is not None
            )
            commit = str(git.get("commit") or "?")[:10] + (" (dirty)" if git.get("dirty") else "")
            rows.append([s.name, "start" if i == 0 else f"resume {i}", commit, versions])
    return markdown_table(["sweep", "run", "commit", "versions"], rows)


def search_section(sweeps: list[SweepData]) -> str:
    """The search's trials, best first, and the configuration the replication sweeps took."""
    search = [s for s in sweeps if s.kind == "search" and not s.trials.empty]
    if not search:
        return "No search sweep in this folder."
    s = search[0]
    rows = []
    for _, r in s.trials.iterrows():
        c = json.loads(r["config_json"])
        objective = r.get("objective")
        rows.append(
            [
                f"{c['lam']:.4g}",
                f"{c['p']:g}",
                "global" if c["w_extent"] is None else f"{c['w_extent']}x{c['w_extent']}",
                "yes" if c["lam_trainable"] else "no",
                str(c["seed"]),
                str(r["status"]),
                "-" if pd.isna(objective) else f"{100 * float(objective):.2f}",
            ]
        )
    rows.sort(key=lambda row: -float(row[-1]) if row[-1] != "-" else 1.0)
    head = ["lam", "p", "w", "trainable lam", "seed", "status", "val. accuracy (%)"]
    table = markdown_table(head, rows, right={0, 1, 4, 6})
    try:
        neuron, info = load_search_choice(s.path)
    except ValueError as err:
        choice = f"No configuration confirmed yet ({err})."
    else:
        choice = (
            f"Confirmed choice (`--from-search`): lam = {neuron['lam']:.4g}, p = "
            f"{neuron['p']:g}, w_extent = {neuron['w_extent']}, trainable lam = "
            f"{neuron['lam_trainable']}; median validation accuracy "
            f"{100 * info['objective']:.2f}% over seeds {', '.join(map(str, info['seeds']))}."
        )
    return f"{choice}\n\n{table}"


def against_sm_section(sweeps: list[SweepData]) -> str:
    """The confirmed choice against SM: in every replication sweep that took its neuron from
    the search, SM and IBNN trials at the sweep's base condition (the whole capped training
    set, no label noise, the dataset's default model): seeds, and median validation accuracy
    (at the selected epoch) and test accuracy of the selected model per arm."""
    rows = []
    for s in _in_order(sweeps):
        if (s.meta.get("neuron_source") or {}).get("source") != "search":
            continue
        t = _trials(s)
        if t.empty:
            continue
        base = t[t["status"].isin(["ok"])] if "status" in t else t
        for column, value in (("train_fraction", 1.0), ("label_noise", 0.0)):
            if column in base:
                base = base[base[column].fillna(value) == value]
        if "C" in base and base["C"].nunique() > 1:
            default_c = TrialConfig(dataset=str(base["dataset"].iloc[0])).C
            base = base[base["C"] == default_c]
        for arm, g in base.groupby("arm", sort=True):
            rows.append(
                [
                    s.name,
                    str(arm),
                    str(len(g)),
                    f"{100 * g['val_acc'].median():.2f}",
                    f"{100 * g['test_acc'].median():.2f}",
                ]
            )
    if not rows:
        return "No replication sweep has run at the search's choice yet."
    head = ["sweep", "arm", "trials", "median val. accuracy (%)", "median test accuracy (%)"]
    return markdown_table(head, rows, right={2, 3, 4})


def cost_per_epoch(sweeps: list[SweepData]) -> dict[str, dict[str, float]]:
    """Seconds per image-epoch, per experiment and family, measured here: each main epoch's wall
    time over the images it passed (training, validation, test) and over its pack's trials (a
    pack's members share one model, and each records the pack's epoch time), median over trials
    and epochs, in the sweeps of the paper's central model on the whole capped training set
    (``COST_KINDS``)."""
    parts = []
    for s in sweeps:
        e = s.epochs
        if e.empty or "wall_s" not in e or s.kind not in COST_KINDS:
            continue
        c = s.meta.get("spec", {}).get("constants", {})
        images = sum(int(c.get(k) or 0) for k in ("max_train", "max_val", "max_test"))
        if images == 0:
            continue
        main = e[e["epoch"] >= 1] if "epoch" in e else e
        size = main["trial_id"].map(pack_sizes(s)).fillna(1)
        cost = main.assign(kind=s.kind, per_image=main["wall_s"] / size / images)
        parts.append(cost[["kind", "family", "per_image"]])
    if not parts:
        return {}
    rows = pd.concat(parts, ignore_index=True)
    medians = rows.groupby(["kind", "family"])["per_image"].median()
    out: dict[str, dict[str, float]] = {}
    for (kind, family), value in medians.items():
        out.setdefault(kind, {})[family] = float(value)
    return out


def cost_for(kind: str, costs: dict[str, dict[str, float]], searched: bool) -> dict[str, float]:
    """The cost per image-epoch to plan ``kind``'s paper-size run with: its own sweep's where it
    was measured and its neuron is fixed; else (not measured, or its neuron comes from the
    search, which at paper size may choose a stiffer one than this campaign's) per family the
    highest measured in any sweep."""
    if kind in costs and not searched:
        return costs[kind]
    out: dict[str, float] = {}
    for measured in costs.values():
        for family, value in measured.items():
            out[family] = max(out.get(family, 0.0), value)
    return out


def _from_repo(args: list[str]) -> list[str]:
    """``args`` with a relative ``--from-search`` folder taken from the repository's root, where
    scripts/findings.sh ran the sweep (this script may run from elsewhere)."""
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a == "--from-search" and "://" not in out[i + 1] and not Path(out[i + 1]).is_absolute():
            out[i + 1] = str(REPO / out[i + 1])
    return out


def pack_sizes(sweep: SweepData) -> dict[str, int]:
    """trial_id -> the size of the pack it was trained in, from the sweep's plan rebuilt from its
    recorded arguments (``ibnn.sweep.trials.packing``, CPU); {} where there is none to rebuild."""
    args = sweep.meta.get("args")
    if not args or sweep.kind not in EXPERIMENTS:
        return {}
    spec = load_spec(sweep.kind)
    parsed = parse_args(spec, _from_repo(args))
    plan = build_plan(spec, parsed)
    if plan.kind == "search":
        return {}
    constants = plan.trial_constants("cpu")
    packs = pack_variants(plan.variants, constants, parsed.pack, parsed.trial_module, False)
    out = {}
    for pack in packs:
        for variant in pack:
            out[plan.trial_ids[plan.variants.index(variant)]] = len(pack)
    return out


# arguments of a campaign sweep that do not carry over to its paper-size run (with a value
# unless named in _NO_VALUE)
_CAMPAIGN_ONLY = {"--protocol", "--storage", "--name", "--from-search", "--smoke", "--resume"}
_NO_VALUE = {"--smoke", "--resume"}


def paper_args(sweep: SweepData | None) -> tuple[list[str], bool]:
    """The campaign sweep's own arguments for its paper-size run (its axes, dataset, neuron:
    not its protocol, storage, name or search folder), and whether it took --from-search."""
    args = list(sweep.meta.get("args") or []) if sweep is not None else []
    kept: list[str] = []
    searched = False
    i = 0
    while i < len(args):
        flag = args[i].split("=", 1)[0]
        if flag in _CAMPAIGN_ONLY:
            searched |= flag == "--from-search"
            i += 1 if "=" in args[i] or flag in _NO_VALUE else 2
            continue
        kept.append(args[i])
        i += 1
    return kept, searched


def paper_plan_section(
    specs: list[Any], costs: dict[str, dict[str, float]], sweeps: list[SweepData]
) -> str:
    """The paper protocol's trials x epochs x cost per epoch, in CPU-hours here and GPU-hours,
    each experiment with the arguments its campaign sweep ran with (its axes, say)."""
    paper = get_protocol("paper")
    ran = {s.kind: s for s in _in_order(sweeps)}
    rows = []
    images = sum(PAPER_IMAGES.values())
    for spec in specs:
        if spec.datasets[0] == "toy2d":
            continue
        extra, searched = paper_args(ran.get(spec.name))
        if not any(a.split("=", 1)[0] == "--dataset" for a in extra):
            extra = ["--dataset", "fmnist", *extra]
        plan = build_plan(spec, parse_args(spec, ["--protocol", "paper", *extra]))
        fams = _families(plan)
        epochs = paper.epochs_for(spec.name, spec.epochs, spec.smoke_epochs) + 2  # + warm-up
        per_image = cost_for(spec.name, costs, searched)
        cpu = sum(n * epochs * images * per_image.get(f, math.nan) for f, n in fams.items())
        steps = PAPER_IMAGES["train"] / 128 + 0.5 * (images - PAPER_IMAGES["train"]) / 128
        gpu = sum(n * epochs * steps * _gpu_step(f) for f, n in fams.items())
        flags = " ".join(extra)
        if searched:
            flags += " --from-search s3://BUCKET/results/search_fmnist"
        rows.append(
            [
                spec.name,
                ", ".join(f"{f} {n}" for f, n in sorted(fams.items())),
                str(epochs),
                "-" if math.isnan(cpu) else f"{cpu / 3600:,.{0 if cpu >= 36000 else 1}f}",
                f"{gpu / 3600:,.1f}",
                f"`ray submit cluster/cluster.yaml sweeps/{spec.name}.py --protocol paper "
                f"{flags} --storage s3://BUCKET/results`",
            ]
        )
    head = ["experiment", "trials", "epochs", "core-hours here", "GPU-hours (assumed)", "command"]
    return markdown_table(head, rows, right={2, 3, 4})


def _gpu_step(family: str) -> float:
    return GPU_STEP_S.get(family, GPU_STEP_S["ibnn"])


def _families(plan: Any) -> dict[str, int]:
    if plan.kind == "search":
        return {"ibnn": plan.expected_trials}
    out: dict[str, int] = {}
    for v in plan.variants:
        out[v["family"]] = out.get(v["family"], 0) + 1
    return out


def _protocol(sweeps: list[SweepData], out: Path) -> str:
    """The protocol the sweeps ran at (their recorded ``--protocol``), else the folder's name."""
    for s in sweeps:
        args = list(s.meta.get("args") or [])
        for i, a in enumerate(args):
            if a == "--protocol" and i + 1 < len(args):
                return args[i + 1]
            if a.startswith("--protocol="):
                return a.split("=", 1)[1]
    return out.name


def _shown(out: Path) -> str:
    """The folder as a command in this repository names it (relative where it lies inside)."""
    try:
        return str(out.resolve().relative_to(REPO))
    except ValueError:
        return str(out)


def render(out: Path) -> str:
    specs = [load_spec(n) for n in EXPERIMENTS]
    sweeps = load_storage(str(out))
    tables = (out / "tables.md").read_text() if (out / "tables.md").exists() else "(not yet)"
    reading = out / "reading.md"
    costs = cost_per_epoch(sweeps)
    cost = "; ".join(
        f"{kind}: " + ", ".join(f"{f} {v * 1e3:.2f} ms" for f, v in sorted(fams.items()))
        for kind, fams in sorted(costs.items(), key=lambda kv: EXPERIMENTS.index(kv[0]))
    )
    folder = _shown(out)
    parts = [
        f"# Findings at `--protocol {_protocol(sweeps, out)}`",
        "Experiments of the paper run on one 2-core CPU machine by `bash scripts/findings.sh`"
        " (each sweep's compacted tables and `sweep.json` are in the folders beside this file;"
        f" `python -m analysis {folder}` draws the dashboard). This file is written by"
        " `scripts/findings_readme.py`: every number below comes from a generated table.",
        "## The protocol",
        protocol_section(specs),
        "## The reading",
        reading.read_text().strip() if reading.exists() else "(not yet written)",
        "## The experiments",
        experiments_section(sweeps, wall_times(out)),
        "## The search",
        "Every trial of the Optuna search (the confirmation runs are its seeds after the first),"
        " best first; validation accuracy at the selected epoch, the search's objective.",
        search_section(sweeps),
        "The confirmed choice against SM, in each replication sweep that ran it: the trials at"
        " the sweep's base condition (the whole capped training set, no label noise, the"
        " default model), medians of the selected models (the claims below compare the arms"
        " per seed, with intervals).",
        against_sm_section(sweeps),
        "## The claims and the figures",
        f"As `python -m analysis {folder} --markdown {folder}/tables.md` writes them:",
        tables.strip(),
        "## The code and versions",
        provenance_section(sweeps),
        "## The paper-size plan",
        "Trials of `--protocol paper` on Fashion-MNIST (each experiment with its campaign"
        " sweep's own arguments, its axes say, not its protocol or storage), epochs with"
        " the two warm-up epochs, and the cost: CPU-hours on this machine from the cost per"
        f" image and epoch measured in these sweeps ({cost or 'none yet'}; one trial per core,"
        " two at once on the 2 cores): an experiment's own where its neuron is fixed, else per"
        " family the highest of them (the experiments that take the search's neuron: at paper"
        " size the search may choose a stiffer one than this campaign's); epochs only, the"
        " final evaluations (attacks) not counted; GPU-hours"
        " *assumed*, not measured (no GPU was lent): an SM training step of 1.4 ms and an IBNN"
        " step of 9.6 ms at batch 128 on one H200 (the design brief's prototype), evaluation at"
        " half a step per image.",
        paper_plan_section(specs, costs, sweeps),
    ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", help="the findings folder, e.g. findings/cpu")
    parser.add_argument(
        "--protocol-table",
        action="store_true",
        help="print the protocols' table of docs/sweeps.md instead",
    )
    args = parser.parse_args(argv)
    if args.protocol_table:
        print(protocol_section([load_spec(n) for n in EXPERIMENTS]))
        return 0
    if args.out is None:
        parser.error("the findings folder is required (or --protocol-table)")
    out = Path(args.out)
    if not out.is_dir():
        print(f"findings_readme: error: {out} is not a folder", file=sys.stderr)
        return 2
    (out / "README.md").write_text(render(out))
    print(json.dumps({"written": str(out / "README.md")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
