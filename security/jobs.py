"""RQ entry points on the `security` queue: thin, they take ids and call a service."""

from __future__ import annotations

import logging

import django_rq
from rq import Retry

from security.policy import Trigger

logger = logging.getLogger(__name__)

QUEUE = "security"


def instance_evaluate_enqueue(*, instance_id: int, trigger: str = Trigger.START) -> None:
    django_rq.get_queue(QUEUE).enqueue(
        instance_evaluate, instance_id, trigger, retry=Retry(max=3, interval=[1, 5, 30]), job_timeout=120
    )


def instance_evaluate(instance_id: int, trigger: str = Trigger.START) -> None:
    from security.services.evaluation import instance_evaluate as evaluate

    evaluate(instance_id=instance_id, trigger=trigger)


SWEEP = "security.jobs.sweep"


def newer_sweep_waiting() -> bool:
    """Another sweep waits in the queue: it will see everything this one would. The scheduler
    queues one every SECURITY_SWEEP_SECONDS whether the last one finished or not; a fleet whose
    sweep outlasts the interval would pile sweeps up in the security lane without this."""
    from rq import get_current_job

    current = get_current_job()
    queue = django_rq.get_queue(QUEUE)
    return any(
        job.func_name == SWEEP and (current is None or job.id != current.id) for job in queue.get_jobs()
    )


def sweep() -> None:
    from security.services.evaluation import security_sweep

    if newer_sweep_waiting():
        logger.info("security sweep skipped: a newer one is queued")
        return
    logger.info("security sweep: %s", security_sweep())


def acknowledgements_expire() -> None:
    from security.services.violations import violations_expire

    violations_expire()
