"""One seeded trial: its config, data, training recipe, evaluations and command line.

    from ibnn.trial import Trial, TrialConfig, run_trial
    result = run_trial(TrialConfig(dataset="fmnist", family="ibnn", lam=0.04, epochs=8))

- ``config``: :class:`TrialConfig`, one frozen dataclass whose fields carry their help and rules;
- ``data`` / ``toy2d``: datasets as tensors, seeded splits, label noise, the 2-D toy set;
- ``train``: the paper's recipe (learning-rate schedule, one epoch, one evaluation pass);
- ``evaluation`` / ``attacks`` / ``metrics``: the evaluations of a trained model, by name;
- ``core``: :class:`Trial` (epoch by epoch, checkpointable) and :func:`run_trial`;
- ``cli``: ``python -m ibnn.trial``, generated from the config's fields.
"""

from __future__ import annotations

from ibnn.trial.config import TrialConfig
from ibnn.trial.core import Trial, TrialResult, format_record, run_trial

__all__ = ["Trial", "TrialConfig", "TrialResult", "format_record", "run_trial"]
