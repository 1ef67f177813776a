"""Structured logs: the context each line carries, in JSON and in plain lines."""

import io
import json
import logging
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core import logs
from tests.conftest import ROOT
from tests.pipeline.clips import make_clip
from tests.pipeline.conftest import ladders  # noqa: F401 - fixtures
from tests.studio.conftest import alice, alice_client, studio_api  # noqa: F401 - fixtures


@pytest.fixture
def json_lines():
    """Lines the root logger writes while the test runs, formatted as LOG_FORMAT=json does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_the_context_set_around_them(json_lines):
    log = logging.getLogger("reelflow.test")
    logs.bind(trace_id="left-by-earlier-work")
    with logs.scope(fresh=True, job_id=7, rq_id="unit-9-abc"):
        with logs.scope(unit_id=9):
            log.info("encoding %s", "240p")
        log.warning("after the unit")
    with logs.scope(fresh=True):
        log.info("outside")
    inner, after, outside = json_lines()
    assert inner["msg"] == "encoding 240p" and inner["level"] == "INFO" and inner["logger"] == "reelflow.test"
    assert (inner["job_id"], inner["unit_id"], inner["rq_id"]) == (7, 9, "unit-9-abc")
    assert after["job_id"] == 7 and "unit_id" not in after
    assert "trace_id" not in inner, "a fresh scope inherits nothing"
    assert not set(logs.FIELDS) & set(outside)
    assert inner["ts"].endswith("+00:00")


def test_an_exception_is_one_json_line_with_its_traceback(json_lines):
    try:
        raise ValueError("bad frame")
    except ValueError:
        logging.getLogger("reelflow.test").exception("unit failed")
    (line,) = json_lines()
    assert "ValueError: bad frame" in line["exc"] and line["msg"] == "unit failed"


def test_plain_lines_name_the_context_after_the_message():
    record = logging.LogRecord("reelflow.test", logging.INFO, __file__, 1, "assembled %s", ("720p",), None)
    with logs.scope(trace_id="abc123", job_id=4):
        logs.ContextFilter().filter(record)
    text = logs.PlainFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert text == "INFO reelflow.test: assembled 720p [trace_id=abc123 job_id=4]"


def test_an_unknown_log_format_is_refused_with_the_choices():
    with pytest.raises(ImproperlyConfigured, match="'json' or 'plain'"):
        logs.logging_config(fmt="xml", level="INFO")


def _settings_logging(module: str, *, ok: bool = True, **env) -> str:
    """The formatter class a settings module configures, read in a fresh interpreter (or, with
    ok=False, what the interpreter said when it refused to start)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOG_"))}
    code = "import django; django.setup(); from django.conf import settings; print(settings.LOGGING['formatters']['main']['()'])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**base, "DJANGO_SETTINGS_MODULE": module, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
             "DJANGO_ALLOWED_HOSTS": "media.example.com", **env},
    )  # fmt: skip
    if not ok:
        assert result.returncode != 0
        return result.stderr
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_production_logs_json_by_default_and_make_run_plain():
    assert _settings_logging("config.settings.production") == "core.logs.JsonFormatter"
    assert _settings_logging("config.settings.production", LOG_FORMAT="plain") == "core.logs.PlainFormatter"
    assert _settings_logging("config.settings.local") == "core.logs.PlainFormatter"
    refused = _settings_logging("config.settings.production", ok=False, LOG_FORMAT="xml")
    assert "LOG_FORMAT must be 'json' or 'plain', not 'xml'" in refused


def test_a_request_has_an_id_and_its_user_on_every_line(json_lines, studio_api, tmp_path):  # noqa: F811
    clip = make_clip(tmp_path / "trip.mp4", duration=2, width=320, height=240, fps=25)
    response = studio_api.start(clip)
    assert response.status_code == 201, response.content
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32
    (line,) = [row for row in json_lines() if row["msg"].startswith("upload ")]
    assert line["request_id"] == request_id and line["user"] == "alice"
    key = response.json()["key"]
    assert line["trace_id"] == logs.trace_id_for(settings.S3_BUCKET_INGEST, key), (
        "the upload's trace starts here"
    )


def test_a_sane_request_id_from_the_proxy_is_kept_and_others_replaced(client, db):
    assert (
        client.get("/healthz", HTTP_X_REQUEST_ID="proxy-id-12345678")["X-Request-ID"] == "proxy-id-12345678"
    )
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="not valid!\n")["X-Request-ID"]
    assert replaced != "not valid!\n" and len(replaced) == 32
