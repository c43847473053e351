"""pyCECT-style ensemble consistency test of a candidate against its reference.

:mod:`.test` (``consistency_test``, ``ConsistencySettings``) and :mod:`.results` (the
``ConsistencyResult`` contract).
"""
