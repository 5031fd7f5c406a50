"""How many epoch checkpoints a trial keeps, and the clean-up of a finished sweep's old ones.

Tune deletes a trial's older checkpoints (``CheckpointConfig(num_to_keep)``) as soon as a new
one is registered, but it uploads its experiment state (which names each trial's latest
checkpoint) to object storage in the background, skipping uploads while one is running. After
a driver crash on object storage, ``--resume`` could then restore a trial from a checkpoint
already deleted ("Could not recover from checkpoint as it does not exist on storage anymore"),
and the trial failed on every retry. On object storage trials therefore keep every checkpoint
while the sweep runs, and a finished sweep deletes all but each trial's last.
"""

from __future__ import annotations

import pyarrow.fs as pafs

from ibnn.results import Storage

__all__ = ["KEPT_LOCAL", "checkpoints_kept", "prune_checkpoints"]

KEPT_LOCAL = 2  # per trial on a local or shared disk, where Tune's state is written in place


def checkpoints_kept(storage: Storage) -> int | None:
    """``CheckpointConfig(num_to_keep)`` for this storage: None (all) on object storage."""
    return KEPT_LOCAL if storage.is_local else None


def prune_checkpoints(storage: Storage, ray_dir: str) -> int:
    """Deletes every ``checkpoint_*`` folder of each trial under ``ray_dir`` but the newest.

    Returns:
        The number of checkpoint folders deleted.
    """
    root = storage.path(ray_dir)
    if not storage.exists(ray_dir):
        return 0
    deleted = 0
    trials = storage.fs.get_file_info(pafs.FileSelector(root))
    for trial in trials:
        if trial.type != pafs.FileType.Directory:
            continue
        found = storage.fs.get_file_info(pafs.FileSelector(trial.path))
        ckpts = sorted(
            i.path
            for i in found
            if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")
        )
        for path in ckpts[:-1]:
            storage.fs.delete_dir(path)
            deleted += 1
    return deleted
