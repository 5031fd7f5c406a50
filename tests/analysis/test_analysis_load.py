"""Reading sweeps file by file: corrupt files, partial sweeps, metadata, sweep kinds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analysis_synthetic import build_expressivity, build_robustness, write_table

from analysis.load import REQUIRED_COLUMNS, find_sweeps, load_storage, load_sweep, sweep_kind
from analysis.status import status_table
from ibnn.results import TABLES, Storage
from ibnn.results.storage import COMPACT_FILE, compact_table

ALL = {
    "data_fraction",
    "expressivity",
    "learning_speed",
    "memorization",
    "robustness",
    "search",
    "toy2d",
    "transfer",
}


def test_finds_every_sweep_folder_and_its_kind(storage, sweeps):
    names = {Path(f).name for f in find_sweeps(str(storage))}
    assert names == ALL  # not_a_sweep holds no table
    assert {s.name: s.kind for s in sweeps} == {n: n for n in ALL}


def test_corrupt_file_is_named_and_the_rest_is_read(sweeps):
    rob = next(s for s in sweeps if s.name == "robustness")
    assert any("zz_corrupt.parquet" in w and "corrupt" in w for w in rob.warnings)
    assert not any(".inflight" in w for w in rob.warnings)  # temp files are skipped silently
    assert rob.evals["trial_id"].nunique() == 15
    assert rob.files["evals"] == 16


def test_status_reports_running_sweep_missing_and_failed_trials(sweeps):
    st = status_table(sweeps).set_index("sweep")
    mem = st.loc["memorization"]
    assert mem["finished"] == "" and mem["expected"] == 57 and mem["found"] == 45
    assert any("still running" in n for n in mem["notes"])
    assert any("12 of 57 expected trials not written" in n for n in mem["notes"])
    exp = st.loc["expressivity"]
    assert exp["failed"] == 1 and exp["ok"] == 60
    assert any("diverged" in n for n in exp["notes"])
    assert any("no sweep.json" in n for n in st.loc["search", "notes"])
    search = st.loc["search"]  # a pruned trial is counted apart from failures
    assert search["pruned"] == 1 and search["failed"] == 0 and search["ok"] == 6
    assert any("1 trials stopped early by the search's scheduler" in n for n in search["notes"])


@pytest.mark.parametrize(
    ("name", "meta", "experiments", "kind"),
    [
        ("expressivity", None, (), "expressivity"),
        ("expressivity_svhn-2", None, (), "expressivity"),
        ("run7", {"script": "sweeps/learning_speed.py"}, (), "learning_speed"),
        ("run7", {"experiment": "memorization", "kind": "grid"}, (), "memorization"),
        ("run7", {}, ("data_fraction",), "data_fraction"),
        ("transferable", None, (), None),
        ("misc", {"kind": "search"}, (), None),
    ],
)
def test_sweep_kind(name, meta, experiments, kind):
    assert sweep_kind(name, meta, experiments) == kind


def test_missing_storage_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="storage must be an existing folder"):
        find_sweeps(str(tmp_path / "nope"))


def test_storage_may_be_a_single_sweep_folder(tmp_path):
    build_expressivity(tmp_path)
    [only] = load_storage(str(tmp_path / "expressivity"))
    assert only.kind == "expressivity" and only.epochs["trial_id"].nunique() == 61


def test_bad_files_duplicates_and_metadata(tmp_path):
    build_robustness(tmp_path)
    folder = tmp_path / "robustness"
    (folder / "sweep.json").write_text("{not json")
    # a file lacking a required column
    pq.write_table(pa.table({"family": ["sm"], "seed": [1]}), folder / "evals" / "thin.parquet")
    # the same rows written again under another name: duplicates of (trial_id, attack, ...)
    first = sorted((folder / "evals").glob("sm_*.parquet"))[0]
    again = pq.read_table(first)
    pq.write_table(again, folder / "evals" / "copy.parquet")
    s = load_sweep(str(folder))
    text = " | ".join(s.warnings)
    assert "unreadable" in text and "sweep.json" in text
    assert "thin.parquet" in text and "required columns" in text
    assert "duplicate rows" in text
    assert s.meta == {}
    assert s.evals.duplicated(["trial_id", "attack", "strength", "family", "lam"]).sum() == 0


def test_missing_sweep_and_trial_columns_are_filled(tmp_path):
    write_table(tmp_path / "toy2d", "boundaries", "t1", [])
    folder = tmp_path / "toy2d" / "boundaries"
    table = pa.table(
        {
            "family": ["sm"],
            "seed": [0],
            "lam": [0.0],
            "p": [10.0],
            "x0": [0.0],
            "x1": [0.0],
            "prob": [0.4],
        }
    )
    pq.write_table(table, folder / "abc.parquet")
    s = load_sweep(str(tmp_path / "toy2d"))
    row = s.boundaries.iloc[0]
    assert row["sweep"] == "toy2d" and row["trial_id"] == "abc"


def test_started_sweep_without_results_is_listed_as_missing(tmp_path):
    folder = tmp_path / "learning_speed_svhn"
    folder.mkdir()
    (folder / "sweep.json").write_text(
        '{"experiment": "learning_speed", "started": "2025-01-01T00:00:00", "expected_trials": 15}'
    )
    [s] = load_storage(str(tmp_path))
    assert s.kind == "learning_speed" and s.epochs.empty
    row = status_table([s]).iloc[0]
    assert row["found"] == 0 and not row["complete"]
    assert "15 of 15 expected trials not written" in row["notes"]


def _pandas_file_by_file(folder: Path, table: str) -> pd.DataFrame:
    """The table as pandas reads it, one file at a time (an independent reader)."""
    frames = []
    for path in sorted((folder / table).glob("*.parquet")):
        try:
            frames.append(pd.read_parquet(path))
        except (pa.ArrowException, OSError):
            continue
    return pd.concat([f for f in frames if not f.empty], ignore_index=True)


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys).reset_index(drop=True)[sorted(df.columns)]


@pytest.mark.parametrize(
    ("sweep", "table", "keys"),
    [
        ("expressivity", "epochs", ["trial_id", "epoch"]),
        ("robustness", "evals", ["trial_id", "attack", "strength"]),
        ("toy2d", "boundaries", ["trial_id", "x0", "x1"]),
    ],
)
def test_tables_equal_pandas_reading_each_file(storage, sweeps, sweep, table, keys):
    got = getattr(next(s for s in sweeps if s.name == sweep), table)
    want = _pandas_file_by_file(storage / sweep, table)
    pd.testing.assert_frame_equal(_sorted(got, keys), _sorted(want, keys))


def _add_older_file(folder: Path) -> None:
    """A trial written before the contract had its optional columns (selected, node, ...)."""
    rows = pq.read_table(sorted((folder / "epochs").glob("*.parquet"))[0]).to_pylist()
    kept = {*REQUIRED_COLUMNS["epochs"], "sweep"}
    old = [{k: v for k, v in r.items() if k in kept} | {"trial_id": "older"} for r in rows]
    pq.write_table(pa.Table.from_pylist(old), folder / "epochs" / "older.parquet")


def test_per_trial_files_and_the_compacted_sweep_read_to_equal_frames(tmp_path):
    build_robustness(tmp_path)
    folder = tmp_path / "robustness"
    (folder / "evals" / "zz_corrupt.parquet").unlink()  # compaction refuses a corrupt file
    _add_older_file(folder)
    before = load_sweep(str(folder))
    assert before.warnings == () and (before.epochs["trial_id"] == "older").any()
    st = Storage(str(tmp_path))
    for table in TABLES:
        compact_table(st, "robustness", table)
    assert {p.name for p in (folder / "epochs").iterdir()} == {COMPACT_FILE}
    after = load_sweep(str(folder))
    assert after.warnings == () and after.files == {**before.files, "epochs": 1, "evals": 1}
    keys = {"epochs": ["trial_id", "epoch"], "evals": ["trial_id", "attack", "strength"]}
    for table, by in keys.items():
        old, new = getattr(before, table), getattr(after, table)
        assert set(old.columns) <= set(new.columns) and len(old) == len(new)
        # the per-trial files had the same columns: after compaction, no column is added
        assert set(new.columns) == set(old.columns)
        pd.testing.assert_frame_equal(_sorted(new, by), _sorted(old, by))


def test_a_corrupt_trial_file_next_to_a_compacted_table_is_named(tmp_path):
    build_robustness(tmp_path)
    folder = tmp_path / "robustness"
    (folder / "evals" / "zz_corrupt.parquet").unlink()
    compact_table(Storage(str(tmp_path)), "robustness", "evals")
    (folder / "evals" / "truncated.parquet").write_bytes((folder / "evals" / COMPACT_FILE)
                                                         .read_bytes()[:200])  # fmt: skip
    s = load_sweep(str(folder))
    assert any("skipped corrupt file" in w and "truncated.parquet" in w for w in s.warnings)
    assert s.evals["trial_id"].nunique() == 15 and s.files["evals"] == 2


def test_files_whose_column_types_disagree_are_still_read(tmp_path):
    """A column Arrow cannot unify (numbers in one file, text in another) is read as pandas
    would concatenate the files' frames."""
    build_expressivity(tmp_path)
    folder = tmp_path / "expressivity" / "epochs"
    first, second = sorted(folder.glob("*.parquet"))[:2]
    for path, note in ((first, 1), (second, "one")):
        table = pq.read_table(path)
        pq.write_table(table.append_column("note", pa.array([note] * len(table))), path)
    s = load_sweep(str(tmp_path / "expressivity"))
    assert s.warnings == () and s.epochs["trial_id"].nunique() == 61
    notes = s.epochs.set_index("trial_id")["note"]
    assert set(notes[first.stem]) == {1} and set(notes[second.stem]) == {"one"}
    assert notes.drop(index=[first.stem, second.stem]).isna().all()
