"""Coupled-versus-offline parameter sensitivity (docs/design.md "Science" -> "Coupled vs offline").

Modules: :mod:`.targets` (what is measured), :mod:`.effects` (one-at-a-time designs),
:mod:`.emulator` (sampled designs: emulator, bootstrap, SHAP, Sobol), :mod:`.verdict` (the
pure comparison rule) and :mod:`.analysis` (the whole job over given tables:
``analyse_sensitivity``, ``SensitivitySettings``). The result models are in
:mod:`detectors.sensitivity.results`.
"""
