"""Which parameter settings freeze (docs/design.md "Science" -> "Parameters").

Public surface, by module: :mod:`.tables` (``load_parameter_inputs``: the parameter table and
``parameters.csv`` under the PPE contracts of :mod:`ensembles.ppe`), :mod:`.outcomes` (each
member frozen or not, time to onset, censoring), :mod:`.emulator` (P(freeze | parameters):
candidates, member-grouped CV, bootstrap), :mod:`.importance` (exact Shapley values and
interaction indices, Sobol indices, the permutation null), :mod:`.region` (safe region,
partial dependence, what-if), :mod:`.drivers` (parameters -> budget terms) and
:mod:`.analysis` (``analyse_parameters``, ``ParametersSettings``). Result models live in
:mod:`.results`.
"""
