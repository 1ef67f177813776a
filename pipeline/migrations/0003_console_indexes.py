# Indexes the operations console reads by (console/selectors.py). AddIndex only.
# The matching `indexes` entries belong in the models' Meta (pipeline/models.py):
#   EncodeJob: models.Index(fields=["created_at", "id"], name="job_created_id_idx")
#   Unit:      models.Index(fields=["state", "finished_at"], name="unit_state_finished_idx"),
#              models.Index(fields=["rq_job_id"], name="unit_rq_job_idx"),
#              models.Index(fields=["worker", "state"], name="unit_worker_state_idx")

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pipeline", "0002_ship_ladders"),
    ]

    operations = [
        # Jobs page: newest first (and keyset pages) over every job, without sorting the table.
        migrations.AddIndex(
            model_name="encodejob",
            index=models.Index(fields=["created_at", "id"], name="job_created_id_idx"),
        ),
        # Workers page: units finished per minute over the last hours (throughput chart).
        migrations.AddIndex(
            model_name="unit",
            index=models.Index(fields=["state", "finished_at"], name="unit_state_finished_idx"),
        ),
        # Workers page: a worker's current RQ job -> its unit.
        migrations.AddIndex(
            model_name="unit",
            index=models.Index(fields=["rq_job_id"], name="unit_rq_job_idx"),
        ),
        # Workers page: units done and failed per worker.
        migrations.AddIndex(
            model_name="unit",
            index=models.Index(fields=["worker", "state"], name="unit_worker_state_idx"),
        ),
    ]
