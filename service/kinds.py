"""The service's closed vocabularies: job states, ensemble kinds, queues, token scopes.

Plain ``Literal`` types with no dependency, so the CLI can offer them as choices (and
print ``--help``) without importing the database or settings stack.
"""

from __future__ import annotations

from typing import Literal, get_args

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATES: tuple[str, ...] = get_args(JobState)
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
EnsembleKind = Literal["freeze-database", "pertlim", "ppe-coupled", "ppe-offline", "control",
                       "candidate"]
QueueName = Literal["io", "gpu"]
QUEUES: tuple[QueueName, ...] = ("io", "gpu")  # io: reading archives; gpu: training
# read: look at jobs, results, ensembles, models, alerts; submit: submit and cancel jobs;
# admin: register, change and remove ensembles, promote models, tokens, scans
Scope = Literal["read", "submit", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
