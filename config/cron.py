"""Periodic work, run by `manage.py rqcron config.cron` (the one scheduler process)."""

from rq import cron

from pipeline import jobs as pipeline_jobs

# Put back what Redis forgot or dead workers dropped (the database is the truth).
cron.register(pipeline_jobs.reconcile, "default", interval=10, job_timeout=120, name="pipeline-reconcile")
# Start jobs for uploads that no storage event announced.
cron.register(pipeline_jobs.ingest_sweep, "default", interval=60, job_timeout=600, name="pipeline-ingest-sweep")
