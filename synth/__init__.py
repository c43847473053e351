"""Synthetic, CESM-faithful history files for tests, demos and benchmarks.

A top-level package beside the layers: it depends on ``ensembles`` only (registry, regions,
file names), and nothing in ``ensembles``, ``detectors``, ``service`` or ``workers`` imports it
except the CLI's ``synth``/``demo`` commands. From causes to files:

* ``scenarios`` (planted causes) and ``physics`` (the reduced Labrador Sea model) give monthly
  regional signals; ``ppe_land`` plants the land response of perturbed-parameter ensembles;
* ``ensemble`` decides who the members are and writes them with ``truth.json``;
  ``table`` gives the feature table the files would give, without writing them;
* ``writers`` turns one case's signals into netCDF files, on ``grids``, through ``layouts``
  (how each model writes its grid), ``model_specs`` (its files and variables), ``climate``
  (background fields) and ``placement`` (where a signal goes).

Modules are imported by name (``synth.grids``, ``synth.writers``...);
this package deliberately imports nothing so that each module stays independent.
"""
