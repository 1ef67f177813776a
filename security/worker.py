"""The RQ worker class every Reelflow worker runs: it registers with security when it starts
and is checked against the worker rules before it takes a job.

`manage.py rqworker --worker-class security.worker.RegisteringWorker`. Registration comes after
the worker subscribed to its command channel, so the shutdown a failed check sends is never
missed. The worker checks itself, which is sound because what it is held to (token digest,
fleet version) comes from the fleet baseline in the database, not from its own settings.
"""

from __future__ import annotations

import logging
import signal

from django.db import DatabaseError, connections
from rq import Worker

logger = logging.getLogger(__name__)


class RegisteringWorker(Worker):
    def _stop_during_bootstrap(self, signum, frame) -> None:
        self._stop_requested = True

    def bootstrap(self, *args, **kwargs) -> None:
        # RQ installs its signal handlers only after bootstrap; a shutdown command answering
        # the registration lands before that. Remember it: the work loop then stops first thing.
        signal.signal(signal.SIGINT, self._stop_during_bootstrap)
        signal.signal(signal.SIGTERM, self._stop_during_bootstrap)
        super().bootstrap(*args, **kwargs)
        from security.fleet import registration_document
        from security.policy import PolicyValidationError, Trigger
        from security.services.evaluation import instance_evaluate
        from security.services.inventory import worker_register

        document = registration_document(
            worker_name=self.name, queues=self.queue_names(), pid=self.pid, hostname=self.hostname or ""
        )
        try:
            instance = worker_register(document=document)
            report = instance_evaluate(instance_id=instance.pk, trigger=Trigger.START)
        except (DatabaseError, PolicyValidationError) as exc:
            # Not checked now; the periodic sweep checks it. Refusing to start would turn a
            # broken policy file into a fleet-wide outage.
            logger.error("worker %s: registration or check failed: %s", self.name, exc)
        else:
            logger.info(
                "worker %s registered with security; rules fired: %s", self.name, report.fired or "none"
            )
        finally:
            # Work horses are forked from this process: they must not share its connections.
            connections.close_all()

    def register_death(self) -> None:
        super().register_death()
        from security.services.inventory import worker_deregister

        try:
            worker_deregister(worker_name=self.name)
        except DatabaseError as exc:
            logger.error("worker %s: could not record its stop: %s", self.name, exc)
        finally:
            connections.close_all()
