"""Playback outside the studio in a real browser (Debian's Chromium through Playwright, daphne in
a subprocess, a real encode): an /embed/ page inside an iframe on another local origin plays
through hls.js with a signed URL; the DASH manifest plays in dash.js (served from the project);
an origin the publisher did not list cannot frame it; an expired token is refused."""

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

from delivery.services import embed_origins_set, playback_urls
from delivery.signing import token_for
from pipeline import events
from pipeline.models import EncodeJob, IngestEvent, JobState
from tests.conftest import ENCODE_LANE_2
from tests.pipeline.clips import make_clip
from tests.pipeline.conftest import run_workers, upload  # noqa: F401
from tests.studio.test_browser import chromium, script_error, static_root, web, web_server  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True), ENCODE_LANE_2]

PLAYING = "() => { const v = document.getElementById('player'); return !!v && v.currentTime > 0.5; }"


@pytest.fixture
def other_origin(tmp_path):
    """A second local origin (another port) serving a page that frames whatever ?src= says."""
    (tmp_path / "host.html").write_text(
        "<!doctype html><title>CMS</title><script>"
        "const f = document.createElement('iframe'); f.id = 'embed'; f.width = 640; f.height = 360;"
        "f.allow = 'autoplay'; f.src = new URLSearchParams(location.search).get('src');"
        "document.documentElement.appendChild(f);</script>"
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def published_clip(web, alice, upload, run_workers, tmp_path):  # noqa: F811
    clip = make_clip(tmp_path / "embed.mp4", duration=4, width=640, height=360)
    key = upload(clip, alice, title="Embedded")
    events.object_created_receive(created=events.ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=key),
                                  source=IngestEvent.Source.CLI)  # fmt: skip
    run_workers(2, env={"REELFLOW_CHUNK_SECONDS": "2"})
    job = EncodeJob.objects.get(asset__publisher=alice)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    return job


def _page(chromium):  # noqa: F811
    context = chromium.new_context(viewport={"width": 900, "height": 600})
    context.set_default_timeout(60_000)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if script_error(message) else None)
    return context, page, errors


def test_embed_in_an_iframe_on_another_origin_plays_and_dash_plays(
    chromium, web, published_clip, other_origin, alice, settings  # noqa: F811
):
    settings.SITE_URL = web.origin
    job = published_clip
    embed_origins_set(publisher=alice, origins=[other_origin])
    urls = playback_urls(asset=job.asset, job=job)
    embed = web.url(urls["embed"].removeprefix(web.origin))
    context, page, errors = _page(chromium)
    page.goto(f"{other_origin}/host.html?src={embed}")
    player = page.frame_locator("#embed").locator("#player")
    player.wait_for()
    inner = player.element_handle().owner_frame()
    assert "/embed/" in inner.url
    player.evaluate("v => { v.muted = true; return v.play(); }")
    inner.wait_for_function(PLAYING)
    assert inner.evaluate("() => !!window.reelflowHls")  # hls.js, not the browser's own HLS

    # DASH: the same signed token, the MPD, dash.js from the project's static files.
    page.goto(f"{embed}&player=dash")
    assert page.evaluate("() => !!window.dashjs && !!window.reelflowDash")
    page.evaluate("() => { const v = document.getElementById('player'); v.muted = true; return v.play(); }")
    page.wait_for_function(PLAYING)
    context.close()
    assert not errors, errors


def test_unlisted_origins_cannot_frame_and_expired_tokens_are_refused(
    chromium, web, published_clip, other_origin, alice, settings  # noqa: F811
):
    settings.SITE_URL = web.origin
    job = published_clip
    embed_origins_set(publisher=alice, origins=["https://cms.example.org"])
    embed = web.url(playback_urls(asset=job.asset, job=job)["embed"].removeprefix(web.origin))
    context, page, _ = _page(chromium)
    page.goto(f"{other_origin}/host.html?src={embed}")
    page.wait_for_timeout(2000)
    framed = [f for f in page.frames if f != page.main_frame]
    assert framed and all(f.evaluate("() => !document.getElementById('player')") for f in framed)

    playback_id = embed.split("/embed/")[1].split("?")[0]
    expired, _ = token_for(playback_id=playback_id, seconds=60, now=1_000_000)
    response = page.goto(web.url(f"/embed/{playback_id}?token={expired}"))
    assert response.status == 403 and "expired" in page.content()
    answer = page.evaluate(f"() => fetch('/play/{playback_id}/{expired}/master.m3u8').then(r => r.status)")
    assert answer == 403
    context.close()
