"""Command line of ``python -m ibnn.trial``, generated from the fields of TrialConfig.

Every TrialConfig field is an option (``--train-fraction 0.5``, ``--lam-trainable``,
``--pgd-eps 0.01 0.03``, ``--max-train none``); its help is the field's own help string, so the
command line cannot drift from the dataclass. Invalid values and an unusable ``--out`` folder
(see :mod:`ibnn.trial.output`) are refused before any data is loaded, in one line, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ibnn.trial.config import TrialConfig, config_fields
from ibnn.trial.data import DatasetNotFoundError
from ibnn.trial.output import OutputError, check_output, write_folder

__all__ = ["build_parser", "main"]


def _optional(tp: Any) -> tuple[bool, Any]:
    """(whether None is allowed, the non-None type)."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return True, args[0]
    return False, tp


def _scalar(tp: Any, allow_none: bool) -> Any:
    def parse(text: str) -> Any:
        if allow_none and text.lower() == "none":
            return None
        return tp(text)

    parse.__name__ = tp.__name__ + (" or none" if allow_none else "")
    return parse


class _Parser(argparse.ArgumentParser):
    """Refusals in one line (the usage is 40 lines: ``--help`` shows it)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one option per TrialConfig field (plus --config, --out, --quiet)."""
    parser = _Parser(
        prog="python -m ibnn.trial",
        description="Train and evaluate one seeded trial (SM or IBNN), the paper's recipe. "
        "Options are the fields of ibnn.trial.config.TrialConfig; 'none' sets an optional field "
        "to None.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="JSON file of TrialConfig fields (the options below override it)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="new folder for epochs.parquet, evals.parquet, "
        "boundary.parquet (toy2d), config.json and result.json; checked before training",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the trial already in --out (otherwise refused)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    group = parser.add_argument_group("TrialConfig fields")
    for f, tp in config_fields():
        flag = "--" + f.name.replace("_", "-")
        allow_none, inner = _optional(tp)
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        help_text = f"{f.metadata['help']} (default: {default})"
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if inner is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(inner) is tuple:
            kw |= {"nargs": "*", "type": typing.get_args(inner)[0], "metavar": "X"}
        else:
            kw |= {"type": _scalar(inner, allow_none), "metavar": inner.__name__.upper()}
        group.add_argument(flag, **kw)
    return parser


def _config(args: argparse.Namespace) -> TrialConfig:
    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            values = json.loads(args.config.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"--config {args.config}: {err}") from err
        if not isinstance(values, dict):
            raise ValueError(
                f"--config {args.config} holds a JSON {type(values).__name__}: "
                "it must be a JSON object of TrialConfig fields"
            )
    for f in dataclasses.fields(TrialConfig):
        if hasattr(args, f.name):  # given on the command line
            given = getattr(args, f.name)
            values[f.name] = tuple(given) if isinstance(given, list) else given
    return TrialConfig.from_dict(values)


def _write(out: Path, cfg: TrialConfig, result: Any) -> None:
    """The trial's files, written whole into ``out`` (see :func:`write_folder`)."""
    import pandas as pd

    def text(content: str) -> Callable[[Path], None]:
        return lambda path: path.write_text(content)

    def table(rows: list[dict]) -> Callable[[Path], None]:
        return lambda path: pd.DataFrame(rows).to_parquet(path, index=False)

    writers = {"config.json": text(json.dumps(cfg.to_dict(), indent=1))}
    tables = {"epochs": result.epochs, "evals": result.evals, "boundary": result.boundary}
    writers |= {f"{name}.parquet": table(rows) for name, rows in tables.items() if rows}
    summary = {"status": result.status, "epochs": result.epochs, "evals": result.evals}
    writers["result.json"] = text(json.dumps(summary, indent=1, default=str))
    write_folder(out, writers)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0: ok, 1: data missing or trial failed, 2: usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = _config(args)
    except (ValueError, TypeError, OSError) as err:
        parser.error(str(err))
    if args.out is not None:
        try:
            check_output(args.out, overwrite=args.overwrite)
        except OutputError as err:
            parser.error(str(err))
    from ibnn.trial.core import run_trial

    try:
        result = run_trial(cfg, progress=not args.quiet)
    except DatasetNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for row in result.evals:
        print(
            f"eval {row['family']} lam={row['lam']:g} {row['attack']} "
            f"strength={row['strength']:g}: acc {row['acc']:.4f} value {row['value']:.4g}"
        )
    sel = [r for r in result.epochs if r["selected"]]
    if sel:
        r = sel[-1]
        print(
            f"status {result.status}; selected epoch {r['epoch']} ({cfg.selection}): "
            f"val acc {r['val_acc']:.4f}, test acc {r['test_acc']:.4f}"
        )
    else:
        print(f"status {result.status}")
    if args.out is not None:
        try:
            _write(args.out, cfg, result)
        except OSError as err:
            print(f"error: writing --out {args.out}: {err}", file=sys.stderr)
            return 1
    return 0 if result.status == "ok" else 1
