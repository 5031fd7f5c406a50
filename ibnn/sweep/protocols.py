"""Named protocols: the sizes of a sweep's trials (images, epochs, seeds, search budget).

Every sweep script accepts ``--protocol smoke|cpu|paper``; ``--smoke`` is ``--protocol smoke``.
A protocol fixes how large each trial is and how many run; an experiment's own axes may be
reduced by a protocol too (its script reads ``SweepContext.protocol``). Explicit flags win over
a protocol's values: ``--seeds``, ``--ibnn-seeds``, ``--epochs``, ``--max-train``,
``--max-test``, ``--trials`` and ``--set KEY=VALUE``.

- ``paper``: the paper's recipe (Methods): the full training set, 80 main epochs (each
  experiment's own default), 10-20 SM seeds and 5 IBNN seeds, p = 10, the paper's model per
  dataset. This is the default.
- ``cpu``: the paper's recipe shape (two SM warm-up epochs, learning rate rising then falling,
  the validation-selected model) on fewer images and epochs, with 5 seeds per arm (the fewest
  the intervals are calibrated for), sized so that the whole campaign of ``scripts/findings.sh``
  runs on a 2-core CPU machine in about 4 hours.
- ``smoke``: a few hundred images, one warm-up and one or two main epochs, one seed: for tests
  and demos; its numbers mean nothing.

docs/sweeps.md lists every protocol's values (``protocol_table`` writes that table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_PROTOCOL",
    "PROTOCOLS",
    "SIZED",
    "SMOKE",
    "Protocol",
    "get_protocol",
    "protocol_table",
]


@dataclass(frozen=True)
class Protocol:
    """The sizes of one named protocol."""

    name: str  # "smoke", "cpu" or "paper"
    summary: str  # one line for --help and the docs
    trial: Mapping[str, Any] = field(default_factory=dict)  # TrialConfig fields of every trial
    seeds: int | None = None  # SM seeds per configuration (None: the experiment's own default)
    ibnn_seeds: int | None = None  # implicit-family seeds (None: min(seeds, 5), as the paper)
    epochs: int | None = None  # main epochs (None: the experiment's own default)
    epochs_of: Mapping[str, int] = field(default_factory=dict)  # per experiment, over `epochs`
    search_trials: int | None = None  # Optuna trials of a search (None: the experiment's own)
    smoke_sizes: bool = False  # main epochs from SweepSpec.smoke_epochs (tiny runs)

    def epochs_for(self, experiment: str, default: int, smoke_default: int) -> int:
        """Main epochs of `experiment` under this protocol (no --epochs given)."""
        if experiment in self.epochs_of:
            return self.epochs_of[experiment]
        if self.epochs is not None:
            return self.epochs
        return smoke_default if self.smoke_sizes else default


# Trial settings of the smoke protocol: a few hundred samples, one warm-up and one main epoch.
SMOKE: dict[str, Any] = {
    "max_train": 256,  # training samples
    "max_test": 200,  # test samples
    "val_fraction": 0.004,  # validation split (240 samples of Fashion-MNIST)
    "n_eval": 16,  # test samples evaluated and attacked
    "warmup_epochs": 1,
    "batch_size": 64,
}

PROTOCOLS: dict[str, Protocol] = {
    "smoke": Protocol(
        name="smoke",
        summary="tiny and fast, one seed: for tests and demos (its numbers mean nothing)",
        trial=SMOKE,
        seeds=1,
        search_trials=3,
        smoke_sizes=True,
    ),
    "cpu": Protocol(
        name="cpu",
        summary="the paper's recipe shape on fewer images and epochs, 5 seeds per arm: "
        "the whole campaign in about 4 hours on 2 CPU cores",
        trial={
            "max_train": 6000,  # training images (of 54,000 after the validation split)
            "max_val": 2000,  # validation images (model selection), a seeded subset
            "max_test": 2000,  # test images, a seeded subset
            "n_eval": 500,  # test images attacked (PGD, Pixle) and used for the Jacobian
        },
        seeds=5,
        ibnn_seeds=5,
        epochs=10,
        epochs_of={"learning_speed": 20, "search": 6, "toy2d": 30},
        search_trials=24,
    ),
    "paper": Protocol(
        name="paper",
        summary="the paper's recipe: the full training set, 80 epochs, 10-20 SM and 5 IBNN "
        "seeds (each experiment's defaults)",
    ),
}
DEFAULT_PROTOCOL = "paper"


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; an unknown name is refused with the valid ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(
            f"--protocol must be one of {', '.join(PROTOCOLS)}, got {name!r}"
        ) from None


def _cell(value: Any) -> str:
    if value is None:
        return "all"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


# Trial fields that a protocol sizes, in the order the table lists them.
SIZED = (
    "max_train",
    "val_fraction",
    "max_val",
    "max_test",
    "n_eval",
    "warmup_epochs",
    "batch_size",
)


def protocol_table(specs: Sequence[Any], defaults: Mapping[str, Any]) -> str:
    """Every protocol's sizes side by side, as a Markdown table (docs/sweeps.md, findings).

    Args:
        specs: the experiments' ``SweepSpec`` objects (name, kind, seeds, epochs, smoke_epochs,
            search_trials), in the order their rows appear.
        defaults: ``TrialConfig``'s default of each field in ``SIZED`` (shown where a protocol
            leaves the field alone).
    """
    protocols = list(PROTOCOLS.values())
    rows = [
        [f"`{key}`"] + [_cell(p.trial.get(key, defaults.get(key))) for p in protocols]
        for key in SIZED
    ]
    for spec in specs:
        if spec.kind == "search":
            rows.append(
                [f"{spec.name}: Optuna trials"]
                + [_cell(p.search_trials or spec.search_trials) for p in protocols]
            )
        else:
            rows.append(
                [f"{spec.name}: SM / IBNN seeds"]
                + [
                    f"{p.seeds or spec.seeds} / {p.ibnn_seeds or min(p.seeds or spec.seeds, 5)}"
                    for p in protocols
                ]
            )
        rows.append(
            [f"{spec.name}: main epochs"]
            + [str(p.epochs_for(spec.name, spec.epochs, spec.smoke_epochs)) for p in protocols]
        )
    head = ["protocol"] + [f"`{p.name}`" for p in protocols]
    lines = [head, ["---"] * len(head), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
