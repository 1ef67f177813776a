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


def sweep() -> None:
    from security.services.evaluation import security_sweep

    logger.info("security sweep: %s", security_sweep())


def acknowledgements_expire() -> None:
    from security.services.violations import violations_expire

    violations_expire()
