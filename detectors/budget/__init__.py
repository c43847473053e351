"""The Lab Sea upper-ocean freshwater budget: the physical line of "where did it come from?".

:mod:`.pathways` (each pathway of fresh water into the Lab Sea, counted once, as data),
:mod:`.content` (freshwater content, its tendency, each term's series),
:mod:`.anomaly` (frozen vs same-configuration members before onset, member bootstrap),
:mod:`.settings` (``BudgetSettings``), :mod:`.results` (the ``Budget`` contract) and
:mod:`.analysis` (``freshwater_budget``, the entry point). Nothing is imported here.
"""
