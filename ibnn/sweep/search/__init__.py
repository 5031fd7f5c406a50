"""A search sweep: its Optuna study, the Tune searcher that drives it, the pruning of bad trials
(ASHA), the confirmation of its best configurations on fresh seeds, and the ``--from-search``
choice a replication sweep takes from it."""
