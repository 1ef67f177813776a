"""Uploads from a URL: the server fetches a real clip from a local HTTP server into the ingest
bucket and the job starts; private addresses are refused when given and again when fetched."""

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import django_rq
import pytest
from django.conf import settings

from api.imports import url_import_run
from api.models import ImportState, UrlImport
from pipeline.models import EncodeJob
from tests.pipeline.clips import make_clip, make_text


@pytest.fixture
def file_server(tmp_path):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_import_fetches_into_the_ingest_bucket_and_starts_the_job(
    alice_api, alice, tmp_path, file_server, s3, redis_conn, django_capture_on_commit_callbacks
):
    clip = make_clip(tmp_path / "remote clip.mp4", duration=1, width=160, height=120)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.post("/api/v1/imports", {"url": f"{file_server}/remote%20clip.mp4", "title": "Remote",
                                                      "profile": "fast"})  # fmt: skip
    assert response.status_code == 202, response.content
    found = UrlImport.objects.get(pk=response.json()["id"])
    assert f"url-import-{found.pk}" in django_rq.get_queue("ingest").job_ids  # on the ingest lane
    url_import_run(import_id=found.pk)  # what that job runs
    body = alice_api.get(f"/api/v1/imports/{found.pk}").json()
    assert body["state"] == ImportState.DONE, body
    assert body["size"] == clip.stat().st_size
    stored = s3.head_object(Bucket=settings.S3_BUCKET_INGEST, Key=UrlImport.objects.get(pk=found.pk).key)
    assert stored["ContentLength"] == clip.stat().st_size
    job = EncodeJob.objects.get(asset_id=body["asset"])
    assert job.asset.publisher == alice and job.asset.title == "Remote" and job.profile.slug == "fast"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/video.mp4", "http://169.254.169.254/latest/meta-data/", "http://[::1]/v.mp4",
            "http://10.0.0.8/v.mp4", "ftp://example.com/v.mp4", "http://user:pw@example.com/v.mp4"],
)  # fmt: skip
def test_private_addresses_and_other_schemes_are_refused_when_given(alice_api, settings, url):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    response = alice_api.post("/api/v1/imports", {"url": url})
    assert response.status_code == 400 and response.json()["error"] == "invalid"
    assert not UrlImport.objects.exists()


def test_a_private_address_is_refused_again_at_fetch_time(alice_api, settings, tmp_path, file_server, s3):
    make_clip(tmp_path / "v.mp4", duration=1, width=160, height=120)
    response = alice_api.post("/api/v1/imports", {"url": f"{file_server}/v.mp4"})  # allowed when given (tests)
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False  # ... as if DNS now answered a private address
    url_import_run(import_id=response.json()["id"])
    found = UrlImport.objects.get()
    assert found.state == ImportState.FAILED and "public addresses only" in found.failure_reason
    assert found.asset is None


@pytest.mark.parametrize(("name", "reason"), [("missing.mp4", "HTTP 404"), ("notes.mp4", "does not start like")])
def test_fetch_refusals_end_the_import_with_a_reason(alice_api, tmp_path, file_server, s3, name, reason):
    make_text(tmp_path / "notes.mp4")
    response = alice_api.post("/api/v1/imports", {"url": f"{file_server}/{name}"})
    url_import_run(import_id=response.json()["id"])
    body = alice_api.get(f"/api/v1/imports/{response.json()['id']}").json()
    assert body["state"] == ImportState.FAILED and reason in body["failure_reason"]


def test_too_large_is_cut_off(alice_api, tmp_path, file_server, s3, settings):
    make_clip(tmp_path / "v.mp4", duration=1, width=160, height=120)
    response = alice_api.post("/api/v1/imports", {"url": f"{file_server}/v.mp4"})
    settings.REELFLOW_MAX_UPLOAD_BYTES = 2000
    url_import_run(import_id=response.json()["id"])
    assert "over the 2000" in UrlImport.objects.get().failure_reason


def test_another_publishers_import_is_404(alice_api, bob_api, file_server):
    response = alice_api.post("/api/v1/imports", {"url": f"{file_server}/v.mp4"})
    assert bob_api.get(f"/api/v1/imports/{response.json()['id']}").status_code == 404
