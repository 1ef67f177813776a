"""Periodic work, run by `manage.py rqcron config.cron` (the one scheduler process).

Every entry goes to a control lane (README, "Lanes"), never to a media queue: `security` (its own
worker, so a sweep waits behind nothing but security work), `webhooks` and `default` (the control
worker: deliveries first, then the short sweeps). The backups tick is a short sweep too: it runs
on `default`, not behind a backup copy on `backup`, and only queues the runs there.
"""

from django.conf import settings
from rq import cron

from backups import jobs as backup_jobs
from console import jobs as console_jobs
from notifications import jobs as notification_jobs
from ops import jobs as ops_jobs
from pipeline import jobs as pipeline_jobs
from pipeline.quality import jobs as quality_jobs
from security import jobs as security_jobs
from studio import jobs as studio_jobs
from webhooks import jobs as webhook_jobs

# Put back what Redis forgot or dead workers dropped (the database is the truth).
cron.register(pipeline_jobs.reconcile, "default", interval=10, job_timeout=120, name="pipeline-reconcile")
cron.register(quality_jobs.quality_reconcile, "default", interval=30, job_timeout=120, name="pipeline-quality-reconcile")
# Start jobs for uploads that no storage event announced.
cron.register(pipeline_jobs.ingest_sweep, "default", interval=60, job_timeout=600, name="pipeline-ingest-sweep")
# Backups: follow storage events, start due and event runs, resume runs whose process died.
cron.register(backup_jobs.tick, "default", interval=settings.BACKUP_TICK_SECONDS, job_timeout=300, name="backups-tick")
# Security: refresh EC2, reconcile workers, evaluate everything (catches what no event announced).
cron.register(security_jobs.sweep, "security", interval=settings.SECURITY_SWEEP_SECONDS, job_timeout=600, name="security-sweep")
# Security: reopen acknowledgements past their expiry.
cron.register(security_jobs.acknowledgements_expire, "security", interval=60, job_timeout=120, name="security-ack-expiry")
# Operations console: every queue's depth once a minute, for the workers page's chart.
cron.register(console_jobs.queue_samples_record, "default", interval=60, job_timeout=60, name="console-queue-samples")
# Studio: abort multipart uploads whose session expired (their parts cost storage).
cron.register(studio_jobs.upload_sessions_expire, "default", interval=600, job_timeout=300, name="studio-upload-expiry")
# Webhooks: queue every due delivery attempt (retries are scheduled in the database).
cron.register(webhook_jobs.deliveries_sweep, settings.WEBHOOKS_QUEUE, interval=10, job_timeout=60, name="webhooks-sweep")
# Webhooks: forget finished deliveries past their retention.
cron.register(webhook_jobs.deliveries_prune, settings.WEBHOOKS_QUEUE, interval=3600, job_timeout=600, name="webhooks-prune")
# Operations: raise (and resolve) the alerts of failed jobs, silent workers and unhealthy dependencies.
cron.register(ops_jobs.watch, "default", interval=60, job_timeout=60, name="ops-watch")
# Notifications: remind channels of alerts still open; redo flushes and deliveries a lost RQ job dropped.
cron.register(notification_jobs.sweep, settings.NOTIFICATIONS_QUEUE, interval=60, job_timeout=60, name="notifications-sweep")
