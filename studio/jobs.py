"""RQ entry points of the studio: thin."""

from studio import services


def upload_sessions_expire() -> int:
    """Abort unfinished uploads past their time (schedule it, e.g. hourly, in config/cron.py)."""
    return services.upload_sessions_expire()
