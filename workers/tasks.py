"""Celery tasks: thin wrappers over ``service.jobs`` (no science, no state of their own).

Payloads are validated on arrival: a task gets only JSON that the service produced, and a
malformed one is rejected with a clear error rather than run.  They are shared tasks, so
they bind to the app ``celery -A workers.celery_app`` builds without importing it here.
"""

from __future__ import annotations

import uuid

from celery import Task, shared_task

from service.broker import RUN_TASK
from service.job_types import register_all
from service.jobs import reconcile, run_job, submit_scheduled, worker_label
from workers.celery_app import RECONCILE_TASK, SCHEDULED_TASK

# Register (and so import) every job type (torch, scikit-learn, ...) now, in the worker's main
# process: prefork pool children are forked from it, so the child that replaces a killed one
# starts warm instead of spending seconds on imports before it can claim the job again.
register_all()


@shared_task(name=RUN_TASK, bind=True)
def run_job_task(self: Task, job_id: str) -> str:
    """Run one job by id; a duplicate delivery returns ``skipped`` without running it."""
    job_id = str(uuid.UUID(job_id))  # ValueError for anything but a job id
    return run_job(job_id, worker=worker_label(self.request.hostname))


@shared_task(name=RECONCILE_TASK)
def reconcile_task() -> dict[str, list[str]]:
    """Re-dispatch lost jobs (scheduled by beat)."""
    report = reconcile()
    return {"dispatched": report.dispatched, "failed": report.failed, "removed": report.removed}


@shared_task(name=SCHEDULED_TASK)
def submit_scheduled_task(job_type: str) -> str | None:
    """Submit a scheduled job such as the nightly scan; skipped if its type does not exist."""
    return submit_scheduled(job_type)
