from django.db import migrations, models


class Migration(migrations.Migration):
    """`EncodeJob.chunk_plan`: the lineage of the chunk boundaries (inputs, chosen length,
    scene moves)."""

    dependencies = [("pipeline", "0008_encodejob_preview_key")]

    operations = [
        migrations.AddField(
            model_name="encodejob",
            name="chunk_plan",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
