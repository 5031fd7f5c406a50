"""``python -m ibnn.trial``: run one trial from the command line (see ``ibnn.trial.cli``)."""

from ibnn.trial.cli import main

raise SystemExit(main())
