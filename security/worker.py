"""The RQ worker class every Reelflow worker runs: it registers with security when it starts
and is checked against the worker rules before it takes a job.

It is the default class (`RQ["WORKER_CLASS"]`, env `REELFLOW_WORKER_CLASS`), so a plain
`manage.py rqworker QUEUE...` runs it. Registration comes after
the worker subscribed to its command channel, so the shutdown a failed check sends is never
missed. The worker checks itself, which is sound because what it is held to (token digest,
fleet version) comes from the fleet baseline in the database, not from its own settings.

`RegisteringWorker` runs each job in the worker process itself (RQ's SimpleWorker): no fork
per job, so the S3 client, Redis and database connections and ffmpeg's version stay warm
between units. A forked work horse had to rebuild them for every job, which measured 0.4-1.0 s
of a unit's fixed cost (docs/benchmarks.md). Isolation does not depend on the fork: ffmpeg runs
in its own process that dies with the worker, a job's timeout is enforced by SIGALRM in the
worker, and a worker that dies mid-unit is caught by the reconciler's liveness keys.
`RegisteringForkWorker` keeps RQ's fork-per-job model for those who want it.
"""

from __future__ import annotations

import logging
import signal

from django.apps import apps
from django.db import DatabaseError, close_old_connections, connections
from rq import SimpleWorker, Worker

logger = logging.getLogger(__name__)


class _Registering:
    def _stop_during_bootstrap(self, signum, frame) -> None:
        self._stop_requested = True

    def bootstrap(self, *args, **kwargs) -> None:
        # RQ installs its signal handlers only after bootstrap; a shutdown command answering
        # the registration lands before that. Remember it: the work loop then stops first thing.
        signal.signal(signal.SIGINT, self._stop_during_bootstrap)
        signal.signal(signal.SIGTERM, self._stop_during_bootstrap)
        super().bootstrap(*args, **kwargs)
        from security.fleet import registration_document, registration_problems
        from security.policy import PolicyValidationError, Trigger, policy_set_current
        from security.services.evaluation import instance_evaluate
        from security.services.inventory import worker_register

        document = registration_document(
            worker_name=self.name, queues=self.queue_names(), pid=self.pid, hostname=self.hostname or ""
        )
        try:
            # Policies first (compiling them imports Custodian, most of a second on a busy
            # machine): once registered, the worker is judged at once.
            policies = policy_set_current()
            instance = worker_register(document=document)
            report = instance_evaluate(instance_id=instance.pk, trigger=Trigger.START, policies=policies)
            problems = registration_problems(document) if report.fired else []
        except (DatabaseError, PolicyValidationError) as exc:
            # Not checked now; the periodic sweep checks it. Refusing to start would turn a
            # broken policy file into a fleet-wide outage.
            logger.error("worker %s: registration or check failed: %s", self.name, exc)
        else:
            logger.info(
                "worker %s registered with security; rules fired: %s", self.name, report.fired or "none"
            )
            # Said here, in the worker's own log, where whoever started it looks first.
            for problem in problems:
                logger.error("worker %s refused by security: %s", self.name, problem)
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


class RegisteringWorker(_Registering, SimpleWorker):
    def bootstrap(self, *args, **kwargs) -> None:
        super().bootstrap(*args, **kwargs)
        # Each app warms what its jobs need, so the first job does not pay for it (the
        # pipeline's: 0.3-0.6 s measured). Security knows no app's jobs: it only asks.
        for config in apps.get_app_configs():
            warm_up = getattr(config, "worker_warm_up", None)
            if warm_up is None:
                continue
            try:
                warm_up()
            except Exception as exc:  # noqa: BLE001 - a cold start only costs time; the job reports real errors
                logger.warning("worker %s: %s warm-up skipped: %s", self.name, config.label, exc)

    def perform_job(self, job, queue) -> bool:
        # Outside a request nothing closes stale database connections (a PostgreSQL restart,
        # CONN_MAX_AGE); do what Django's request cycle does, around every job.
        close_old_connections()
        try:
            return super().perform_job(job, queue)
        finally:
            close_old_connections()


class RegisteringForkWorker(_Registering, Worker):
    pass
