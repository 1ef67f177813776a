from django.db import migrations, models


class Migration(migrations.Migration):
    """`rq_id` names an RQ job's id everywhere; `job_id` only ever names an EncodeJob."""

    dependencies = [("pipeline", "0006_quality")]

    operations = [
        migrations.RenameField("unit", "rq_job_id", "rq_id"),
        migrations.RenameField("qualitytask", "rq_job_id", "rq_id"),
        migrations.RemoveIndex("unit", name="unit_rq_job_idx"),
        migrations.AddIndex("unit", models.Index(fields=["rq_id"], name="unit_rq_idx")),
    ]
