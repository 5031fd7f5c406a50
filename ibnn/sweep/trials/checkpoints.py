"""How many epoch checkpoints a trial keeps, and the clean-up of a finished sweep's old ones.

Tune deletes a trial's older checkpoints (``CheckpointConfig(num_to_keep)``) as soon as a new
one is registered, but it uploads its experiment state (which names each trial's latest
checkpoint) to the storage in the background, skipping uploads while one is running. After
a driver crash, ``--resume`` could then restore a trial from a checkpoint already deleted
("Could not recover from checkpoint as it does not exist on storage anymore"), and the trial
failed on every retry. Seen on object storage and, less often, on a local disk (Tune stages
its state and copies it there too). Trials therefore keep every checkpoint while the sweep
runs, and a finished sweep deletes all but each trial's last.
"""

from __future__ import annotations

import pyarrow.fs as pafs

from ibnn.results import Storage

__all__ = ["KEPT_WHILE_RUNNING", "prune_checkpoints"]

KEPT_WHILE_RUNNING = None  # ``CheckpointConfig(num_to_keep)``: every checkpoint of a trial


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
