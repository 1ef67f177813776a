"""Direct uploads over API v1 (the studio's multipart path, against the session's SeaweedFS):
start, sign, resume, abort, refusals, and another publisher's token. The flow to a published
asset with real workers is tests/delivery/test_e2e.py."""

import base64

import pytest
import requests

from studio.models import UploadSession, UploadState
from tests.studio.conftest import SMALL_PARTS, fake_video


@pytest.fixture
def video(tmp_path, s3, settings):
    settings.STUDIO_UPLOAD_PART_BYTES = SMALL_PARTS
    return fake_video(tmp_path / "talk.mp4", 2 * SMALL_PARTS + 1000)


def _start_body(path, **extra) -> dict:
    data = path.read_bytes()
    return {"filename": path.name, "size": len(data), "head": base64.b64encode(data[:1024]).decode(),
            "profile": "fast", "last_modified": 1, **extra}  # fmt: skip


def test_start_sign_resume_and_abort(alice_api, video):
    started = alice_api.post("/api/v1/uploads", _start_body(video))
    assert started.status_code == 201, started.content
    upload = started.json()
    assert upload["parts_total"] == 3 and set(upload["part_urls"]) == {"1", "2", "3"}
    data = video.read_bytes()
    assert requests.put(upload["part_urls"]["1"], data=data[:SMALL_PARTS], timeout=30).status_code == 200
    again = alice_api.post("/api/v1/uploads", _start_body(video))
    assert again.status_code == 200 and again.json()["resumed"] is True
    assert again.json()["parts_stored"] == [{"number": 1, "size": SMALL_PARTS}]
    signed = alice_api.post(f"/api/v1/uploads/{upload['id']}/parts", {"parts": [2, 3]})
    assert signed.status_code == 200 and set(signed.json()["urls"]) == {"2", "3"}
    incomplete = alice_api.post(f"/api/v1/uploads/{upload['id']}/complete")
    assert incomplete.status_code == 409 and incomplete.json()["error"] == "incomplete"
    aborted = alice_api.post(f"/api/v1/uploads/{upload['id']}/abort")
    assert aborted.status_code == 200 and aborted.json()["state"] == UploadState.ABORTED
    closed = alice_api.post(f"/api/v1/uploads/{upload['id']}/parts", {"parts": [2]})
    assert closed.status_code == 409 and closed.json()["error"] == "closed"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"head": "bm90IGEgdmlkZW8="}, 415, "not_video"),
        ({"head": "***"}, 400, "invalid"),
        ({"head": "ünïcode"}, 400, "invalid"),
        ({"filename": "notes.txt"}, 415, "not_video"),
        ({"size": 0}, 400, "invalid"),
        ({"size": "big"}, 400, "invalid"),
        ({"profile": "nope"}, 400, "invalid"),
        ({"fingerprint": "xyz"}, 400, "invalid"),
        ({"colour": "red"}, 400, "invalid"),
    ],
)
def test_bad_starts_are_refused_with_a_reason(alice_api, video, change, status, code):
    response = alice_api.post("/api/v1/uploads", _start_body(video, **change))
    assert response.status_code == status, response.content
    assert response.json()["error"] == code and response.json()["message"]
    assert not UploadSession.objects.exists()


def test_too_large_is_413(alice_api, video, settings):
    settings.REELFLOW_MAX_UPLOAD_BYTES = 1000
    response = alice_api.post("/api/v1/uploads", _start_body(video))
    assert response.status_code == 413 and response.json()["error"] == "too_large"


def test_part_numbers_out_of_range_are_400(alice_api, video):
    upload = alice_api.post("/api/v1/uploads", _start_body(video)).json()
    for parts in ([0], [4], [], list(range(1, 102))):
        response = alice_api.post(f"/api/v1/uploads/{upload['id']}/parts", {"parts": parts})
        assert response.status_code == 400, parts


def test_another_publishers_upload_is_404(alice_api, bob_api, video):
    upload = alice_api.post("/api/v1/uploads", _start_body(video)).json()
    for method, path in [("get", ""), ("post", "/parts"), ("post", "/complete"), ("post", "/abort")]:
        call = getattr(bob_api, method)
        response = call(f"/api/v1/uploads/{upload['id']}{path}", {"parts": [1]}) if path == "/parts" else call(
            f"/api/v1/uploads/{upload['id']}{path}"
        )
        assert response.status_code == 404, (method, path)
    assert UploadSession.objects.get(pk=upload["id"]).state == UploadState.UPLOADING
