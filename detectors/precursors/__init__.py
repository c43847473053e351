"""Precursors of the freeze: skill by lead, SHAP by process, drop tests.

:mod:`.settings` (``PrecursorSettings``), :mod:`.analysis` (``analyse_precursors``,
``AnalysisError``) and :mod:`.results` (the ``PrecursorResult`` contract). Nothing is
imported here, so the contract and settings load without the model stack.
"""
