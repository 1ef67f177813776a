from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0007_rq_id")]

    operations = [
        migrations.AddField(
            model_name="encodejob", name="preview_key", field=models.CharField(blank=True, max_length=1024),
        ),
    ]
