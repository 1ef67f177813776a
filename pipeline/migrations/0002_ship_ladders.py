from django.db import migrations


def load_ladders(apps, schema_editor):
    from pipeline.ladders import ladders_sync

    ladders_sync(
        apps.get_model("pipeline", "Profile"),
        apps.get_model("pipeline", "VideoRenditionSpec"),
        apps.get_model("pipeline", "AudioRenditionSpec"),
    )


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0001_initial")]
    operations = [migrations.RunPython(load_ladders, migrations.RunPython.noop)]
