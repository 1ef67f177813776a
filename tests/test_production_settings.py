"""Production settings refuse to start half-configured and pass Django's deploy checks."""

import os
import secrets
import subprocess
import sys

from tests.conftest import ROOT


def _manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REELFLOW_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings.production", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_refuses_to_start_without_a_secret_key():
    result = _manage("check", env={"DJANGO_ALLOWED_HOSTS": "media.example.com"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_refuses_to_start_without_allowed_hosts():
    result = _manage("check", env={"DJANGO_SECRET_KEY": secrets.token_urlsafe(50)})
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS must name" in result.stderr


def test_check_deploy_reports_nothing():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_ALLOWED_HOSTS": "media.example.com"},
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
