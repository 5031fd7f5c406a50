"""The common command line of every sweep script: its flags (``flags``), their values
(``values``), the validated ``SweepArgs`` (``args``) and the check of a ``--resume``'s flags
(``resume_flags``)."""
