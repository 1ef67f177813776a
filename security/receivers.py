"""Signal receivers: they hand the signal to a service and nothing else."""

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from security.selectors import client_address
from security.services.logins import device_cookie_issue, login_failure_record


@receiver(user_login_failed, dispatch_uid="security.login_failed")
def _login_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    if request is not None and getattr(request, "security_login_refusal", ""):
        return  # refused unchecked (locked, or told to wait): not a guess at the password
    login_failure_record(
        username=str(credentials.get("username", "")),
        address=client_address(request),
        device=getattr(request, "security_device", "") if request is not None else "",
    )


@receiver(user_logged_in, dispatch_uid="security.device_cookie")
def _logged_in(sender, request=None, user=None, **kwargs) -> None:
    # The browser becomes a known device of this account (security.middleware sets the cookie).
    if request is not None and user is not None:
        request.security_device_cookie = device_cookie_issue(username=user.get_username())


@receiver(post_migrate, dispatch_uid="security.fleet_baseline")
def _deployed(sender, app_config=None, **kwargs) -> None:
    # A migrate is a deploy: the fleet's version becomes the code's that ran it.
    if app_config is not None and app_config.label == "security":
        from security.services.baseline import fleet_baseline_update

        fleet_baseline_update()
