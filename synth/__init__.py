"""Synthetic, CESM-faithful history files for tests, demos and benchmarks.

Modules are imported by name (``synth.grids``, ``synth.writers``...);
this package deliberately imports nothing so that each module stays independent.
"""
