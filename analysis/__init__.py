"""Analysis of IBNN sweep results: medians with exact CIs, the paper's figures, a dashboard.

Reads the Parquet tables that sweeps write under `<storage>/<sweep>/`; imports neither torch
nor ray. Entry point: `python -m analysis <storage> --out dashboard.html`.
"""

from __future__ import annotations

from analysis.load import SweepData, load_storage
from analysis.report import Report, compute_report
from analysis.stats import BootstrapSpec, median_ci, summarize

__all__ = [
    "BootstrapSpec",
    "Report",
    "SweepData",
    "compute_report",
    "load_storage",
    "median_ci",
    "summarize",
]
