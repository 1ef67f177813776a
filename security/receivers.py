"""Signal receivers: they hand the signal to a service and nothing else."""

from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from security.selectors import client_address
from security.services.detectors import login_failure_record


@receiver(user_login_failed, dispatch_uid="security.login_failed")
def _login_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    login_failure_record(username=str(credentials.get("username", "")), address=client_address(request))


@receiver(post_migrate, dispatch_uid="security.fleet_baseline")
def _deployed(sender, app_config=None, **kwargs) -> None:
    # A migrate is a deploy: the fleet's version becomes the code's that ran it.
    if app_config is not None and app_config.label == "security":
        from security.services.baseline import fleet_baseline_update

        fleet_baseline_update()
