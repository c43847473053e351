"""The Celery application of esmwatch workers: Redis broker, JSON only, late acks.

The module's ``app`` is built from :mod:`service.settings` when first asked for, so that
``celery -A workers.celery_app worker`` picks up ``ESMWATCH_*`` settings at start and
fails at once, saying why, when no broker is configured (never falling back to Celery's
defaults), while importing this module needs no broker.  Why these options:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after
  the job ran, so a worker killed mid-job hands the message back instead of losing it;
- ``worker_prefetch_multiplier=1``: a worker busy with a long job holds no other messages;
- ``visibility_timeout`` above the hard time limit: Redis does not re-deliver a job that is
  still legitimately running;
- the in-memory beat scheduler: the default one keeps its state in a pickle (shelve) file.

A worker or beat process creates its files 0600 and directories 0700 (umask 077), and a
worker that starts re-queues at once the jobs its previous incarnation (same node name)
still held, rather than leaving them to the lease and the reconciler.

Duplicate deliveries are harmless because ``service.jobs.run_job`` claims by compare-and-set.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import beat_init, celeryd_init, worker_ready

from service.broker import celery_config
from service.jobs import recover_own_jobs
from service.settings import SERVICE_UMASK, Settings, get_settings

log = logging.getLogger(__name__)

RECONCILE_TASK = "esmwatch.reconcile"
SCHEDULED_TASK = "esmwatch.submit_scheduled"
SCAN_JOB = "scan"


def worker_config(settings: Settings) -> dict[str, Any]:
    """The full worker configuration: shared transport settings plus worker behaviour."""
    return {
        **celery_config(settings),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_time_limit_s,
        "task_time_limit": settings.hard_time_limit_s,
        "beat_scheduler": "celery.beat:Scheduler",
        "beat_schedule": beat_schedule(settings),
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The reconciler, always, and the nightly scan when a cron string is set."""
    schedule: dict[str, dict[str, Any]] = {
        "reconcile": {"task": RECONCILE_TASK, "schedule": float(settings.reconcile_interval_s)},
    }
    if settings.scan_cron:
        minute, hour, day_of_month, month_of_year, day_of_week = settings.scan_cron.split()
        schedule["nightly-scan"] = {
            "task": SCHEDULED_TASK, "args": [SCAN_JOB],
            "schedule": crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                                month_of_year=month_of_year, day_of_week=day_of_week),
        }
    return schedule


def create_celery(settings: Settings | None = None) -> Celery:
    """A Celery app configured from ``settings`` (default: the process settings).

    Raises
    ------
    ConfigurationError
        When no broker is configured.
    """
    app = Celery("esmwatch", include=["workers.tasks"], set_as_current=False)
    app.conf.update(worker_config(settings or get_settings()))
    return app


@celeryd_init.connect
@beat_init.connect
def _restrict_umask(**_: Any) -> None:
    os.umask(SERVICE_UMASK)


@worker_ready.connect
def _recover_own_jobs(sender: Any, **_: Any) -> None:
    try:
        recover_own_jobs(sender.hostname)
    except Exception:  # a database outage: the lease and the reconciler still recover them
        log.exception("could not re-queue the jobs of %s's previous run", sender.hostname)


@cache
def _app() -> Celery:
    return create_celery()


def __getattr__(name: str) -> Celery:
    """``workers.celery_app.app``, created on first access (PEP 562)."""
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
