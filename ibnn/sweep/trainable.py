"""Old module path, kept only so that Tune states pickled before the sweep package was laid out
by concern (ibnn 0.1.0, December 2026) still restore: Tune pickles these classes by module path.

Removal: in ibnn 0.3.0 or after 2027-06-30, whichever comes first; sweep folders started before
then must be finished by then. New code imports ``ibnn.sweep.trials.identity``.
"""

from __future__ import annotations

from ibnn.sweep.trials.identity import TrialNamer, TrialSettings

__all__ = ["TrialNamer", "TrialSettings"]
