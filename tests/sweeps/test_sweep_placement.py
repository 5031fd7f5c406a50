"""Placement: the GPU share comes from what the cluster can provide (the autoscaler's node
types), not from the nodes that happen to be up when the sweep starts; GPU trials use the card
Ray assigned ("auto") unless ``--set device=...`` says otherwise. End to end on the replica:
test_sweep_late_nodes.py."""

from __future__ import annotations

import shutil

import yaml

from ibnn.sweep.cluster.resources import (
    DEFAULT_GPU_FRACTION,
    autoscaler_gpus,
    default_gpu_share,
    trial_resources,
)
from ibnn.sweep.command_line.args import parse_args
from ibnn.sweep.plan import build_plan
from tests.sweeps.conftest import REPO, load_script


def test_gpu_workers_that_are_not_up_yet_still_get_gpu_trials(tmp_path):
    shipped = REPO / "cluster" / "cluster.yaml"  # what `ray up` leaves on the head (its types)
    assert autoscaler_gpus(shipped) == 1.0
    head_only = {"CPU": 0.0, "memory": 1e9}  # the autoscaling cluster at start: the head alone
    assert default_gpu_share(head_only, shipped) == DEFAULT_GPU_FRACTION
    cpu_only = tmp_path / "cpu.yaml"
    config = yaml.safe_load(shipped.read_text())
    for node_type in config["available_node_types"].values():
        node_type["resources"].pop("GPU", None)
    cpu_only.write_text(yaml.safe_dump(config))
    assert default_gpu_share(head_only, cpu_only) == 0.0
    assert default_gpu_share({"CPU": 4.0, "GPU": 2.0}, cpu_only) == DEFAULT_GPU_FRACTION  # up now
    assert default_gpu_share(head_only, tmp_path / "no-launcher.yaml") == 0.0  # plain `ray start`


def test_the_runner_asks_for_gpus_from_the_autoscaler_config(monkeypatch, tmp_path):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0.0})  # only the head is up
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = load_script("expressivity").SPEC
    assert trial_resources(1.0, None) == ({"cpu": 1.0}, "cpu")  # no launcher
    shutil.copy(REPO / "cluster" / "cluster.yaml", tmp_path / "ray_bootstrap_config.yaml")
    assert trial_resources(1.0, None) == ({"cpu": 1.0, "gpu": 0.25}, "auto")
    explicit = parse_args(spec, ["--gpus-per-trial", "0"])  # the flag wins
    assert trial_resources(explicit.cpus_per_trial, explicit.gpus_per_trial) == (
        {"cpu": 1.0},
        "cpu",
    )


def test_gpu_trials_use_the_assigned_card_or_the_device_set_explicitly():
    spec = load_script("expressivity").SPEC
    plan = build_plan(spec, parse_args(spec, []))
    assert plan.trial_constants("auto")["device"] == "auto"  # cuda:0 = Ray's card
    assert plan.trial_constants("cpu")["device"] == "cpu"
    strict = parse_args(spec, ["--set", "device=cuda"])  # no CPU fallback: fails without CUDA
    assert build_plan(spec, strict).trial_constants("auto")["device"] == "cuda"
