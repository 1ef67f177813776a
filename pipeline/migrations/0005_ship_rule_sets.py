"""The shipped rule sets (pipeline.rules.SHIPPED_RULE_SETS): a default baseline for every job
and a quality floor for the standard and full ladders. Operations staff edit them in the console."""

from django.db import migrations


def ship(apps, schema_editor):
    from pipeline.rules import rule_sets_sync

    rule_sets_sync(
        apps.get_model("pipeline", "RuleSet"),
        apps.get_model("pipeline", "Rule"),
        apps.get_model("pipeline", "Profile"),
        apps.get_model("auth", "Group"),
    )


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0004_publish_rules"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(ship, migrations.RunPython.noop)]
