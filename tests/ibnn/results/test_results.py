"""ibnn.results: fixed schemas, one file per trial per table, atomic rewrites, URI storage."""

from __future__ import annotations

import math
import os
import threading

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ibnn.results import SCHEMAS, TABLES, Storage, build_table, read_table, trial_file


def epoch_row(epoch: int, **kw) -> dict:
    row = {
        "family": "ibnn",
        "dataset": "fmnist",
        "seed": 0,
        "L": 1,
        "C": 3,
        "n_params": 300,
        "lam": -1.0,
        "p": 10.0,
        "w_extent": None,
        "epoch": epoch,
        "lr": 0.01,
        "train_loss": 0.5,
        "train_acc": 0.8,
        "val_loss": 0.6,
        "val_acc": 0.7,
        "test_loss": 0.6,
        "test_acc": 0.7,
        "solver_iters": 3.0,
        "solver_residual": 1e-6,
        "nonconverged_frac": 0.0,
        "wall_s": 1.0,
    }
    return row | kw


CTX = {"sweep": "s", "experiment": "e", "trial_id": "t1"}


def test_every_table_has_the_identity_columns_and_design_columns():
    assert set(TABLES) == {"epochs", "evals", "boundaries", "trials"}
    for table in TABLES:
        assert SCHEMAS[table].names[:3] == ["sweep", "experiment", "trial_id"]
    design_epochs = (
        "sweep trial_id family dataset seed L C n_params lam p w_extent train_fraction "
        "label_noise epoch lr train_loss train_acc val_loss val_acc test_loss test_acc "
        "solver_iters solver_residual nonconverged_frac wall_s"
    ).split()
    design_evals = (
        "sweep trial_id family dataset seed L C n_params lam p w_extent attack strength acc"
    )
    assert set(design_epochs) <= set(SCHEMAS["epochs"].names)
    assert set(design_evals.split()) <= set(SCHEMAS["evals"].names)
    assert SCHEMAS["epochs"].field("w_extent").type == pa.int64()
    assert SCHEMAS["epochs"].field("lam").type == pa.float64()


def test_build_table_fills_context_and_keeps_the_schema():
    table = build_table("epochs", [epoch_row(1), epoch_row(2, w_extent=3)], CTX)
    assert table.schema == SCHEMAS["epochs"]
    assert table.column("w_extent").to_pylist() == [None, 3]
    assert table.column("trial_id").to_pylist() == ["t1", "t1"]
    assert table.column("train_fraction").to_pylist() == [None, None]  # optional, absent


def test_build_table_refuses_unknown_and_missing_columns():
    with pytest.raises(ValueError, match="outside the epochs schema.*'bogus'"):
        build_table("epochs", [epoch_row(1, bogus=1)], CTX)
    row = epoch_row(1)
    del row["val_acc"]
    with pytest.raises(ValueError, match="lacks required columns \\['val_acc'\\]"):
        build_table("epochs", [row], CTX)
    with pytest.raises(ValueError, match="unknown results table 'epoch'.*valid tables"):
        build_table("epoch", [], CTX)


def test_trial_file_rejects_paths():
    assert trial_file("evals", "abc") == "evals/abc.parquet"
    for bad in ("", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="trial_id"):
            trial_file("evals", bad)


def test_rewrite_replaces_the_trial_file_and_leaves_no_temp_files(tmp_path):
    st = Storage(str(tmp_path))
    st.write_rows("sw", "epochs", "t1", [epoch_row(1)], {"experiment": "e"})
    st.write_rows("sw", "epochs", "t1", [epoch_row(1), epoch_row(2)], {"experiment": "e"})
    st.write_rows("sw", "epochs", "t2", [epoch_row(1, w_extent=5, seed=1)], {"experiment": "e"})
    assert sorted(os.listdir(tmp_path / "sw" / "epochs")) == ["t1.parquet", "t2.parquet"]
    df = pd.read_parquet(tmp_path / "sw" / "epochs")
    assert len(df) == 3
    assert not df.duplicated(["trial_id", "epoch"]).any()
    assert sorted(df["w_extent"].dropna().tolist()) == [5]
    assert st.list_trial_ids("sw", "epochs") == ["t1", "t2"]


def test_readers_skip_hidden_files_and_read_empty_tables(tmp_path):
    st = Storage(str(tmp_path))
    st.write_rows("sw", "evals", "t1", [], {"experiment": "e"})
    (tmp_path / "sw" / "evals" / ".t2.parquet.123.tmp").write_bytes(b"half a file")
    assert read_table(st, "sw", "evals").num_rows == 0
    assert read_table(st, "sw", "boundaries").schema == SCHEMAS["boundaries"]
    assert len(pd.read_parquet(tmp_path / "sw" / "evals")) == 0


def test_file_uri_storage_round_trip(tmp_path):
    st = Storage(f"file://{tmp_path}")
    assert st.is_local and st.uri == f"file://{tmp_path}"
    st.write_rows("sw", "epochs", "t1", [epoch_row(1)], {"experiment": "e"})
    st.write_json("sw/sweep.json", {"a": 1})
    assert st.read_json("sw/sweep.json") == {"a": 1}
    assert read_table(st, "sw", "epochs").num_rows == 1
    assert (tmp_path / "sw" / "epochs" / "t1.parquet").exists()


def test_a_reader_never_sees_a_partial_file(tmp_path):
    """While one thread rewrites a trial's file with a growing number of rows, every
    ``read_table`` in another thread parses and holds a whole prefix of rows."""
    st = Storage(str(tmp_path))
    path = tmp_path / "sw" / "epochs" / "t1.parquet"
    st.write_rows("sw", "epochs", "t1", [epoch_row(1)], {"experiment": "e"})
    stop = threading.Event()
    seen: list[int] = []

    def writer() -> None:
        rows = []
        for e in range(1, 150):
            rows.append(epoch_row(e, train_loss=float(e)))
            st.write_rows("sw", "epochs", "t1", rows, {"experiment": "e"})
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not stop.is_set():
        table = read_table(st, "sw", "epochs")
        epochs = table.column("epoch").to_pylist()
        assert epochs == list(range(1, len(epochs) + 1))
        seen.append(len(epochs))
    thread.join()
    assert len(seen) > 5 and max(seen) > min(seen)
    assert read_table(st, "sw", "epochs").num_rows == 149
    assert not [n for n in os.listdir(path.parent) if n.startswith(".")]
    assert math.isclose(pq.read_table(path).column("train_loss").to_pylist()[-1], 149.0)


def test_files_written_before_an_optional_column_existed_still_read(tmp_path):
    """A sweep written before the provenance columns (node, node_id, device) were added."""
    old_schema = pa.schema([f for f in SCHEMAS["epochs"] if f.name not in ("node", "device")])
    row = epoch_row(1) | CTX | {"trial_id": "t"}
    (tmp_path / "s" / "epochs").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), tmp_path / "s/epochs/t.parquet")
    new = build_table("epochs", [row | {"trial_id": "u", "node": "gpu-3", "device": "NVIDIA H200"}])
    pq.write_table(new, tmp_path / "s/epochs/u.parquet")
    table = read_table(str(tmp_path), "s", "epochs")
    assert table.schema == SCHEMAS["epochs"]
    assert table.column("node").to_pylist() == [None, "gpu-3"]
    assert table.column("device").to_pylist() == [None, "NVIDIA H200"]


def test_uri_options_stay_at_the_end_of_joined_uris():
    """pyarrow's URI form for S3-compatible servers: the endpoint is in the query string."""
    st = Storage("s3://bucket/root/?endpoint_override=127.0.0.1:9000&scheme=http")
    assert st.root == "bucket/root" and st.path("sw", "epochs") == "bucket/root/sw/epochs"
    assert st.join_uri("sw", "ray") == (
        "s3://bucket/root/sw/ray?endpoint_override=127.0.0.1:9000&scheme=http"
    )
    assert st.join_uri() == "s3://bucket/root?endpoint_override=127.0.0.1:9000&scheme=http"
    assert Storage(st.join_uri("sw")).root == "bucket/root/sw"  # another process can open it
