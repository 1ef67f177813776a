"""Assets over API v1: list with filters and cursor paging, get, update, delete, takedown,
renditions, jobs, playback; every operation's owner check; bad input gets a JSON 4xx."""

import pytest
from django.conf import settings

from core.models import Event
from delivery.models import AssetDelivery
from pipeline.models import Asset, AssetState, JobState


def test_list_pages_with_a_cursor_and_filters(alice_api, alice, bob, make_asset):
    mine = [make_asset(alice, title=f"Clip {n}")[0] for n in range(5)]
    make_asset(bob, title="Bob's")
    seen, cursor = [], None
    while True:
        page = alice_api.get("/api/v1/assets", {"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [a.pk for a in sorted(mine, key=lambda a: (a.created_at, a.pk), reverse=True)]
    found = alice_api.get("/api/v1/assets", {"q": "clip 3"}).json()["items"]
    assert [item["title"] for item in found] == ["Clip 3"]
    assert alice_api.get("/api/v1/assets", {"state": "ready"}).json()["items"] == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"cursor": "not-a-cursor"}, "cursor_invalid"),
        ({"cursor": "eyJ0IjoxfQ"}, "cursor_invalid"),
        ({"limit": "0"}, "invalid"),
        ({"limit": "many"}, "invalid"),
        ({"state": "sleeping"}, "invalid"),
        ({"created_after": "yesterday"}, "invalid"),
        ({"q": "a\x00b"}, "invalid"),
        ({"created_after": "9999-12-31T23:59:59-21:27"}, "invalid"),
    ],
)
def test_bad_list_queries_are_400_saying_what_to_fix(alice_api, query, code):
    response = alice_api.get("/api/v1/assets", query)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == code and response.json()["message"]


def test_get_shows_delivery_and_latest_job(alice_api, alice, make_asset):
    asset, job = make_asset(alice, job_state=JobState.PUBLISHED)
    body = alice_api.get(f"/api/v1/assets/{asset.pk}").json()
    assert body["latest_job"] == job.pk and body["latest_job_state"] == "published"
    assert body["policy"] == settings.DELIVERY_DEFAULT_POLICY and len(body["playback_id"]) >= 16


def test_update_title_metadata_and_policy(alice_api, alice, make_asset):
    asset, _ = make_asset(alice)
    response = alice_api.patch(
        f"/api/v1/assets/{asset.pk}",
        {"title": "Launch", "metadata": {"cms_id": "42"}, "policy": "public", "legal_hold": True},
    )
    assert response.status_code == 200, response.content
    asset.refresh_from_db()
    assert asset.title == "Launch"
    assert AssetDelivery.objects.get(asset=asset).metadata == {"cms_id": "42"}
    assert response.json()["policy"] == "public" and response.json()["legal_hold"] is True
    assert Event.objects.filter(type="asset.updated", subject_id=str(asset.pk)).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"titel": "typo"}, "titel"),
        ({"title": 5}, "title"),
        ({"title": ""}, "title"),
        ({"policy": "everyone"}, "policy"),
        ({"metadata": {"a": 1}}, "metadata.a"),
        ({"metadata": "x"}, "metadata"),
        ([1, 2], "(body)"),
    ],
)
def test_bad_updates_are_400_naming_the_field(alice_api, alice, make_asset, body, field):
    asset, _ = make_asset(alice)
    response = alice_api.patch(f"/api/v1/assets/{asset.pk}", body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["error"] == "invalid" and any(f["field"] == field for f in answer["fields"]), answer


def test_malformed_json_and_huge_bodies_are_4xx_json(alice_api, alice, make_asset, settings):
    asset, _ = make_asset(alice)
    response = alice_api.patch(f"/api/v1/assets/{asset.pk}", raw=b'{"title": ')
    assert response.status_code == 400 and "not valid JSON" in response.json()["message"]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = alice_api.patch(f"/api/v1/assets/{asset.pk}", raw='{"title": "' + "x" * 5000 + '"}')
    assert response.status_code == 413 and response.json()["error"] == "too_large"


def test_downloadable_rungs_must_be_published_video_renditions(alice_api, alice, make_asset):
    asset, _ = make_asset(alice)
    response = alice_api.patch(f"/api/v1/assets/{asset.pk}", {"downloadable": ["h264-360p"]})
    assert response.status_code == 400 and "nothing is published" in response.json()["message"]


def _alice_paths(asset_id: int, job_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("get", f"/api/v1/assets/{asset_id}", None),
        ("patch", f"/api/v1/assets/{asset_id}", {"title": "Mine now"}),
        ("delete", f"/api/v1/assets/{asset_id}", None),
        ("post", f"/api/v1/assets/{asset_id}/takedown", {"reason": "x"}),
        ("delete", f"/api/v1/assets/{asset_id}/takedown", None),
        ("get", f"/api/v1/assets/{asset_id}/renditions", None),
        ("get", f"/api/v1/assets/{asset_id}/jobs", None),
        ("get", f"/api/v1/assets/{asset_id}/playback", None),
        ("get", f"/api/v1/jobs/{job_id}", None),
        ("get", f"/api/v1/jobs/{job_id}/units", None),
    ]


def test_another_publishers_token_gets_404_everywhere(alice_api, bob_api, alice, make_asset):
    asset, job = make_asset(alice, job_state=JobState.PUBLISHED)
    for method, path, body in _alice_paths(asset.pk, job.pk):
        call = getattr(bob_api, method)
        response = call(path, body) if method in ("post", "patch") else call(path)
        assert response.status_code == 404, (method, path, response.content)
        assert response.json()["error"] == "not_found"
    asset.refresh_from_db()
    assert asset.title == "Clip" and Asset.objects.filter(pk=asset.pk).exists()
    assert not AssetDelivery.objects.filter(asset=asset, taken_down_at__isnull=False).exists()
    for method, path, _body in _alice_paths(asset.pk, job.pk)[:1] + _alice_paths(asset.pk, job.pk)[5:]:
        assert getattr(alice_api, method)(path).status_code == 200, path


def test_unknown_ids_and_routes_are_json_404(alice_api):
    assert alice_api.get("/api/v1/assets/999999").json()["error"] == "not_found"
    assert alice_api.get("/api/v1/uploads/not-a-uuid").status_code == 404
    response = alice_api.get("/api/v1/nothing-here")
    assert response.status_code == 404


def test_playback_urls_follow_the_policy(alice_api, alice, make_asset):
    asset, _ = make_asset(alice, job_state=JobState.PUBLISHED)
    signed = alice_api.get(f"/api/v1/assets/{asset.pk}/playback", {"expires_in": 600}).json()
    assert signed["policy"] == "signed" and "/play/" in signed["hls"] and signed["expires_at"]
    alice_api.patch(f"/api/v1/assets/{asset.pk}", {"policy": "public"})
    public = alice_api.get(f"/api/v1/assets/{asset.pk}/playback").json()
    assert public["hls"].endswith(f"/play/{public['playback_id']}/public/master.m3u8") and public["expires_at"] is None
    alice_api.patch(f"/api/v1/assets/{asset.pk}", {"policy": "private"})
    private = alice_api.get(f"/api/v1/assets/{asset.pk}/playback").json()
    assert private["hls"] is None and private["dash"] is None
    assert alice_api.get(f"/api/v1/assets/{asset.pk}/playback", {"expires_in": 5}).status_code == 400


def test_delete_removes_media_row_and_keeps_an_audit_event(alice_api, alice, make_asset, s3):
    asset, job = make_asset(alice, job_state=JobState.PUBLISHED, source_bucket=settings.S3_BUCKET_INGEST,
                            source_key=f"uploads/alice/{'x' * 8}/clip.mp4")  # fmt: skip
    keys = [f"assets/{asset.pk}/jobs/{job.pk}/package/master.m3u8", f"published/{asset.pk}/{job.pk}/master.m3u8"]
    for key in keys:
        s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key, Body=b"#EXTM3U\n")
    s3.put_object(Bucket=settings.S3_BUCKET_INGEST, Key=asset.source_key, Body=b"source")
    response = alice_api.delete(f"/api/v1/assets/{asset.pk}")
    assert response.status_code == 204
    assert not Asset.objects.filter(pk=asset.pk).exists()
    assert alice_api.get(f"/api/v1/assets/{asset.pk}").status_code == 404
    assert all(item["id"] != asset.pk for item in alice_api.get("/api/v1/assets").json()["items"])
    for prefix in (f"assets/{asset.pk}/", f"published/{asset.pk}/"):
        assert s3.list_objects_v2(Bucket=settings.S3_BUCKET_MEDIA, Prefix=prefix).get("KeyCount", 0) == 0
    assert s3.list_objects_v2(Bucket=settings.S3_BUCKET_INGEST, Prefix=asset.source_key).get("KeyCount", 0) == 0
    audit = Event.objects.get(type="asset.deleted", subject_id=str(asset.pk))
    assert audit.actor == alice and audit.payload["prefix"] == f"assets/{asset.pk}/"


def test_deleting_a_processing_asset_cancels_its_job_first(alice_api, alice, make_asset, s3):
    asset, job = make_asset(alice, job_state=JobState.ENCODING)
    assert alice_api.delete(f"/api/v1/assets/{asset.pk}").status_code == 204
    assert Event.objects.filter(type="job.cancelled", subject_id=str(job.pk)).exists()


def test_takedown_and_lift(alice_api, alice, make_asset):
    asset, _ = make_asset(alice, job_state=JobState.PUBLISHED)
    response = alice_api.post(f"/api/v1/assets/{asset.pk}/takedown", {"reason": "DMCA notice 17"})
    assert response.status_code == 200 and response.json()["taken_down"] is True
    assert alice_api.get(f"/api/v1/assets/{asset.pk}/playback").json()["hls"] is None
    assert alice_api.post(f"/api/v1/assets/{asset.pk}/takedown", {}).status_code == 400
    assert alice_api.delete(f"/api/v1/assets/{asset.pk}/takedown").json()["taken_down"] is False
    assert Event.objects.filter(type="asset.taken_down", payload__reason="DMCA notice 17").exists()


def test_jobs_and_renditions(alice_api, alice, make_asset):
    from tests.factories import RenditionFactory

    asset, job = make_asset(alice, job_state=JobState.ENCODING)
    RenditionFactory(job=job, name="h264-360p", kind="video", height=360, width=640)
    job_body = alice_api.get(f"/api/v1/jobs/{job.pk}").json()
    assert job_body["asset"] == asset.pk and job_body["state"] == "encoding"
    assert [j["id"] for j in alice_api.get(f"/api/v1/assets/{asset.pk}/jobs").json()] == [job.pk]
    renditions = alice_api.get(f"/api/v1/assets/{asset.pk}/renditions").json()
    assert [r["name"] for r in renditions] == ["h264-360p"]
    assert asset.state == AssetState.PROCESSING


def test_openapi_document_and_docs_page_are_served(client):
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/v1/assets" in doc["paths"]
    assert doc["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and b"swagger" in page.content.lower()


def test_a_page_of_assets_costs_the_same_queries_whatever_its_length(alice_api, alice, make_asset, django_assert_max_num_queries):
    from delivery.services import asset_delivery_ensure

    for n in range(3):
        asset_delivery_ensure(make_asset(alice, title=f"Small {n}")[0])
    alice_api.get("/api/v1/token")  # last used written; permissions cached per request anyway
    with django_assert_max_num_queries(8) as few:
        assert len(alice_api.get("/api/v1/assets").json()["items"]) == 3
    for n in range(12):
        asset_delivery_ensure(make_asset(alice, title=f"More {n}")[0])
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(alice_api.get("/api/v1/assets").json()["items"]) == 15


def test_times_with_any_offset_filter_in_utc(alice_api, alice, make_asset):
    """An offset PostgreSQL refuses (beyond ±15:59) is read as the UTC time it means."""
    make_asset(alice, title="Kept")
    response = alice_api.get("/api/v1/assets", {"created_after": "2001-11-16T12:22:05-21:27"})
    assert response.status_code == 200, response.content
    assert [a["title"] for a in response.json()["items"]] == ["Kept"]
