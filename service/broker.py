"""The Celery transport: JSON-only settings shared by the producer and the workers' app.

Jobs never travel as anything but their id (the database row is the source of truth, see
:mod:`service.jobs`); this module only knows how to reach the broker.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from celery import Celery
from kombu import Connection, Queue

from ensembles.errors import ConfigurationError
from service.kinds import QUEUES
from service.settings import Settings

log = logging.getLogger(__name__)

RUN_TASK = "esmwatch.run_job"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the producer here and the workers' app: JSON only.

    Raises
    ------
    ConfigurationError
        When no broker is configured (embedded mode has no Celery).
    """
    if settings.broker_url is None:
        raise ConfigurationError("no broker configured (set ESMWATCH_BROKER_URL); without one "
                                 "jobs run inside the API server or CLI process")
    queues = [settings.queue_name(queue) for queue in QUEUES]
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s,
                                     "socket_connect_timeout": 5},
        "result_backend": settings.result_backend,
        "task_ignore_result": settings.result_backend is None,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_queues": [Queue(name) for name in queues],
        "task_default_queue": queues[0],
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0,
                                      "interval_step": 0.5, "interval_max": 1},
        "timezone": "UTC",
        "enable_utc": True,
    }


def broker_status(settings: Settings) -> Literal["embedded", "ok", "degraded"]:
    """Whether the broker answers now (``embedded`` when there is none)."""
    if settings.broker_url is None:
        return "embedded"
    try:
        with Connection(settings.broker_url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                         timeout=2)
    except Exception as err:  # any failure to connect means degraded, whatever its type
        log.warning("broker %s unreachable: %s", _redact(settings.broker_url), err)
        return "degraded"
    return "ok"


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


_producers: dict[tuple[str, str], Celery] = {}
_lock = threading.Lock()


def producer(settings: Settings) -> Celery:
    """A Celery client that only sends (the workers' app lives in ``workers``)."""
    key = (settings.broker_url or "", settings.queue_prefix)
    with _lock:
        if key not in _producers:
            app = Celery("esmwatch-producer", set_as_current=False)
            app.conf.update(celery_config(settings))
            _producers[key] = app
        return _producers[key]
