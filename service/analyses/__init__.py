"""The analyses as the CLI and the jobs both run them: one module per analysis.

:mod:`.inputs` is the one path from archive roots to a feature table; :mod:`.precursors`,
:mod:`.consistency` and :mod:`.sensitivity` each run their detector and write the report
and figures (their ``*_figures`` modules).  None of them writes ``result.json``: the caller
writes the result contract once (:mod:`service.result_files`).
"""
