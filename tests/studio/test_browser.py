"""The studio in a real browser: Debian's Chromium driven by Playwright, against daphne serving
config.asgi in a subprocess (sharing this test's database file, S3 and Redis) and real RQ
workers. A publisher uploads a generated clip through the page, watches the grid fill without a
reload, plays the result; another publisher is shut out; an upload resumes after a reload.
"""

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from django.conf import settings

from core import s3 as s3_module
from core.roles import Role
from pipeline.queues import MEDIA as MEDIA_QUEUES
from tests.conftest import ENCODE_LANE_2, ROOT, free_port, wait_until, worker_env
from tests.pipeline.clips import make_clip, make_png, make_text
from tests.studio.conftest import SMALL_PARTS, fake_video

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), ENCODE_LANE_2]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PIPELINE_QUEUES = (*MEDIA_QUEUES, "default")
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"

# Records every grid cell's state changes from the first paint, before any page script runs.
CELL_LOG = """
window.__cellLog = [];
new MutationObserver((records) => {
  for (const r of records) {
    const el = r.target;
    if (el.classList && el.classList.contains("cell")) window.__cellLog.push([el.dataset.unit, el.dataset.state]);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
"""

# Keeps every websocket the page opens in window.__sockets (a test closes one to drop it), and
# every text the connection status shows in window.__status.
WATCH_SOCKETS = """
window.__sockets = [];
window.__status = [];
window.WebSocket = class extends window.WebSocket {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("live-status") || document.getElementById("socket-state");
  if (el) new MutationObserver(() => window.__status.push(el.textContent)).observe(el, { childList: true });
});
"""
# The page's second socket (after a drop) is open.
RECONNECTED = "() => window.__sockets.length === 2 && window.__sockets[1].readyState === WebSocket.OPEN"


def script_error(message) -> bool:
    """A console error of a script (a resource the browser failed to load is the test's own
    business: some are 404s on purpose, one is /favicon.ico)."""
    return message.type == "error" and not message.text.startswith("Failed to load resource")


@contextlib.contextmanager
def signed_in_page(chromium, web, username: str):
    """A fresh browser context signed in as ``username`` (password "pw"), its websockets
    watched (WATCH_SOCKETS); on leaving, no script error may have been logged."""
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(60_000)  # waits, not speed checks: a loaded CI machine is slow
    context.add_init_script(WATCH_SOCKETS)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if script_error(message) else None)
    page.goto(web.url("/accounts/login/"))
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    yield page
    context.close()
    assert not errors, errors


def off_the_loop(func, *args, **kwargs):
    """func(...) in a thread of its own: Playwright's sync API keeps an event loop on the test's
    thread, where async_to_sync (a channel-layer group_send, say) refuses to run."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(func(*args, **kwargs)))
    worker.start()
    worker.join(timeout=30)
    assert result, f"{func.__name__} did not finish"
    return result[0]


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    """Static files collected once, as production serves them (whitenoise, DEBUG off)."""
    var = tmp_path_factory.mktemp("web-var")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "REELFLOW_VAR_DIR": str(var)}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    return var


class Web:
    def __init__(self, origin: str, proc: subprocess.Popen, log: Path) -> None:
        self.origin = origin
        self.proc = proc
        self.log = log

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"


@pytest.fixture(scope="module")
def web_server(
    chromium, django_db_setup, django_db_blocker, _s3_session_settings, static_root, tmp_path_factory
):
    """daphne on a free port serving config.asgi with the test settings, for the module: it
    reads the test database file, so it sees each test's committed rows."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    buckets = [settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP]
    s3_module.buckets_ensure(buckets, cors_origins=[settings.SITE_URL, origin])
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    with django_db_blocker.unblock():
        env = worker_env(
            {
                "REELFLOW_VAR_DIR": str(static_root),
                "REELFLOW_SITE_URL": origin,
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DJANGO_CSRF_TRUSTED_ORIGINS": origin,
                "S3_PUBLIC_ENDPOINT_URL": settings.S3_PUBLIC_ENDPOINT_URL,
                "STUDIO_UPLOAD_PART_BYTES": str(SMALL_PARTS),
            }
        )
    env.pop(ASYNC_UNSAFE, None)  # the web process keeps Django's guard
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daphne exited:\n{log.read_text()[-3000:]}")
        try:
            return requests.get(f"{origin}/accounts/login/", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or its first answer is slow
            return False

    try:
        wait_until(up, timeout=30, message="daphne to answer")
    except BaseException:
        proc.kill()  # never leave a daphne behind when it did not come up
        proc.wait()
        raise
    yield Web(origin, proc, log)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    s3_module.buckets_ensure(buckets, cors_origins=[settings.SITE_URL])


@pytest.fixture
def web(web_server, transactional_db, ladders, s3, redis_conn):
    return web_server


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/install.sh --dev installs it)")
    # Playwright's sync API keeps an event loop on this thread for as long as it runs; the
    # tests (and the database flush between them) still read and write rows synchronously.
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture
def new_page(chromium, web):
    """new_page(username) -> a page in a fresh browser context, logged in as that user. An
    uncaught script error or a script's console error on any page fails the test."""
    contexts = []
    script_errors: list[str] = []

    def make(username: str):
        context = chromium.new_context(viewport={"width": 1200, "height": 900})
        context.set_default_timeout(60_000)  # waits, not speed checks: a loaded CI machine is slow
        context.add_init_script(CELL_LOG)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda message: print(f"console {username} {message.type}: {message.text}"))
        page.on("console", lambda m: script_errors.append(f"{username}: {m.text}") if script_error(m) else None)
        page.on("pageerror", lambda error: script_errors.append(f"{username}: {error}"))
        page.goto(web.url("/accounts/login/"))
        page.fill("#id_username", username)
        page.fill("#id_password", "pw")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r".*/studio/$"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not script_errors, script_errors


@pytest.fixture
def workers(web, rq_worker_process):
    """Real (not burst) workers on every pipeline queue, running while the page uploads."""

    def start(count: int = 2) -> None:
        for _ in range(count):
            rq_worker_process(*PIPELINE_QUEUES)

    return start


def test_publisher_uploads_watches_the_grid_fill_and_plays_the_result(
    web, new_page, workers, make_user, ladders, tmp_path
):
    from pipeline.models import Asset, JobState

    alice = make_user("alice", role=Role.PUBLISHER)
    make_user("bob", role=Role.PUBLISHER)
    clip = make_clip(tmp_path / "beach_day.mp4", duration=8, width=640, height=360, fps=25)
    workers(2)

    page = new_page("alice")
    page.get_by_role("link", name="Upload videos").click()
    page.set_input_files("#files", str(clip))
    item = page.locator(".upload-item")
    assert item.locator(".upload-title").input_value() == "beach day"
    item.locator(".upload-title").fill("Beach day at the sea")
    page.select_option("#profile", "fast")
    page.get_by_role("button", name="Start upload").click()
    link = item.get_by_role("link", name="Watch it encode")
    link.wait_for(state="visible", timeout=30_000)
    assert re.search(r"of .*MiB", item.locator(".upload-stats").inner_text())
    assert "is being encoded" in item.locator(".upload-message").inner_text()

    asset = Asset.objects.get(publisher=alice)
    assert asset.title == "Beach day at the sea"
    link.click()
    page.wait_for_url(web.url(f"/studio/assets/{asset.pk}/"))
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector("#grid td.cell", timeout=30_000)
    assert page.locator("#socket-state").inner_text() in ("Live", "Finished")
    page.wait_for_function(
        "() => document.getElementById('progress').dataset.state === 'published'", timeout=150_000
    )

    _grid_filled_in_place(page)
    _player_plays(page)
    _quality_panel_follows(page)
    # A fresh load of the published page shows the player and the downloads straight away.
    page.reload()
    page.wait_for_selector("#player video")
    assert page.get_by_role("link", name="Original upload").count() == 1
    assert asset.jobs.get().state == JobState.PUBLISHED

    _stranger_refused(new_page("bob"), web, asset)


def _grid_filled_in_place(page) -> None:
    # The grid changed in place: no reload, and cells went through running to done.
    assert page.evaluate("window.__sameDocument") is True
    log = page.evaluate("window.__cellLog")
    seen: dict[str, list[str]] = {}
    for unit, state in log:
        states = seen.setdefault(unit, [])
        if not states or states[-1] != state:
            states.append(state)
    assert any("running" in states and states[-1] == "done" for states in seen.values()), seen
    states = page.eval_on_selector_all("#grid td.cell", "cells => cells.map(c => c.dataset.state)")
    assert len(states) == 2 * 2 + 1 and set(states) == {"done"}, states  # 240p, 360p × 2 chunks + audio
    assert page.locator("#job-progress").get_attribute("value") in ("100", "100.0")
    assert page.locator("#timeline").get_by_text("Published").count() >= 1



def _player_plays(page) -> None:
    # The player arrived without a reload too; it plays.
    page.wait_for_selector("#player video")
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("#player").get_attribute("data-engine") == "hls.js"
    page.wait_for_function("() => document.querySelectorAll('#player .quality option').length === 3")
    page.locator("#player .play").click()
    page.wait_for_function("() => document.querySelector('#player video').currentTime > 1.0", timeout=30_000)
    low = page.locator("#player .quality option").last.get_attribute("value")  # sorted by height
    page.locator("#player .quality").select_option(low)
    page.wait_for_function(f"() => document.getElementById('player').dataset.level === '{low}'", timeout=15_000)
    # Hovering the seek bar shows a thumbnail cut from the sprite.
    seek = page.locator("#player .seek")
    box = seek.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    preview = page.locator("#player .preview-img")
    preview.wait_for(state="visible")
    assert "X-Amz-Signature" in preview.evaluate("el => el.style.backgroundImage")



def _quality_panel_follows(page) -> None:
    # Quality numbers come in after publishing, a chunk at a time: the panel follows them live.
    page.wait_for_function(
        "() => ['done', 'failed'].includes(document.getElementById('quality').dataset.state)", timeout=120_000
    )
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("#quality").get_attribute("data-state") == "done"
    assert page.locator("#quality .qc-cell").count() == 2 * 2  # 240p, 360p × 2 chunks
    assert page.locator("#quality .qc-pending, #quality .qc-failed").count() == 0
    assert "Measured: 4 of 4" in page.locator("#quality-note").inner_text()



def _stranger_refused(other, web, asset) -> None:
    # Another publisher: 404 for the page, refusal for the socket.
    response = other.goto(web.url(f"/studio/assets/{asset.pk}/"))
    assert response.status == 404
    code = other.evaluate(
        """(path) => new Promise((resolve) => {
             const ws = new WebSocket(`ws://${location.host}${path}`);
             ws.onmessage = () => resolve("got a message");
             ws.onclose = (e) => resolve(e.code);
           })""",
        f"/ws/studio/assets/{asset.pk}/",
    )
    assert code == 4404
    assert other.goto(web.url(f"/studio/assets/{asset.pk}/hls/master.m3u8")).status == 404


def test_asset_page_follows_the_job_again_after_its_socket_drops(web, new_page, make_user, ladders):
    """The grid through the shared client (live.js): a dropped socket reconnects on its own, the
    new snapshot brings what changed meanwhile, and messages flow again."""
    from pipeline.models import Unit, UnitState
    from pipeline.services.units import unit_start
    from tests.console.factories import job_with_units

    alice = make_user("alice", role=Role.PUBLISHER)
    job = job_with_units(alice, unit_states={"h264-240p": [UnitState.QUEUED, UnitState.QUEUED]})
    first, second = Unit.objects.filter(job=job).order_by("chunk__index")
    page = new_page("alice")
    page.add_init_script(WATCH_SOCKETS)
    page.goto(web.url(f"/studio/assets/{job.asset_id}/"))
    page.wait_for_selector("#socket-state.live")
    page.wait_for_selector(f'#grid td.cell[data-unit="{first.pk}"][data-state="queued"]')

    Unit.objects.filter(pk=first.pk).update(state=UnitState.RUNNING)  # its message is lost
    page.evaluate("window.__sockets[0].close()")
    page.wait_for_function(RECONNECTED)
    page.wait_for_selector("#socket-state.live")
    shown = page.evaluate("window.__status")
    assert any(text.startswith("Disconnected; retrying in") for text in shown), shown
    assert shown[-2:] == ["Reconnecting…", "Live"], shown
    page.wait_for_selector(f'#grid td.cell[data-unit="{first.pk}"][data-state="running"]')

    unit_start(unit_id=second.pk, worker="w-test")
    page.wait_for_selector(f'#grid td.cell[data-unit="{second.pk}"][data-state="running"]')
    assert page.evaluate("window.__sockets.length") == 2


def page_wait_until(page, predicate, *, timeout: float, message: str) -> None:
    """wait_until for tests with a page open: sleeps through Playwright, so its route handlers
    and events keep running meanwhile (a plain time.sleep would stall the browser's requests)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        page.wait_for_timeout(100)


def _part_number(url: str) -> int | None:
    numbers = urllib.parse.parse_qs(urllib.parse.urlparse(url).query).get("partNumber")
    return int(numbers[0]) if numbers else None


def test_an_upload_resumes_from_the_stored_parts_after_a_reload(web, new_page, make_user, s3, tmp_path):
    from studio.models import UploadSession, UploadState

    make_user("alice", role=Role.PUBLISHER)
    video = fake_video(tmp_path / "long_take.mp4", 2 * SMALL_PARTS + 123_456)  # three parts
    page = new_page("alice")
    page.goto(web.url("/studio/upload/"))
    sent: list[int] = []
    page.on(
        "request",
        lambda r: sent.append(_part_number(r.url)) if r.method == "PUT" and _part_number(r.url) else None,
    )

    # The network drops for every part but the first (only those requests are intercepted).
    def not_part_one(url: str) -> bool:
        return url.startswith(settings.S3_PUBLIC_ENDPOINT_URL) and _part_number(url) not in (None, 1)

    page.route(not_part_one, lambda route: route.abort("internetdisconnected"))
    page.set_input_files("#files", str(video))
    page.get_by_role("button", name="Start upload").click()

    def stored() -> set[int]:
        session = UploadSession.objects.filter(state=UploadState.UPLOADING).first()
        if session is None:
            return set()
        parts = s3.list_parts(Bucket=session.bucket, Key=session.key, UploadId=session.upload_id).get(
            "Parts", []
        )
        return {p["PartNumber"] for p in parts}

    page_wait_until(page, lambda: stored() == {1}, timeout=20, message="part 1 stored")
    # The parts go out at once, each as soon as a signing request (sent at once too) answers
    # with its URL: a web process busy beside other tests may answer part 2's after part 1 is
    # stored. All three are still tried, which a one-at-a-time upload stopping at part 2 is not.
    page_wait_until(page, lambda: {1, 2, 3} <= set(sent), timeout=20, message="parts go in parallel")
    # The page counts part 1's bytes once its PUT's progress reaches the script (after S3 may
    # already list the part).
    page.wait_for_function(
        "() => document.querySelector('.upload-stats').textContent.includes('MiB of 10.1 MiB')", timeout=20_000
    )

    page.on("dialog", lambda dialog: dialog.accept())  # "leave the page while uploading?"
    page.reload()
    page.unroute(not_part_one)
    assert "long_take.mp4" in page.locator("#unfinished").inner_text()
    sent.clear()
    page.set_input_files("#files", str(video))
    page.get_by_role("button", name="Start upload").click()
    item = page.locator(".upload-item")
    item.get_by_role("link", name="Watch it encode").wait_for(state="visible", timeout=30_000)
    assert "Uploaded" in item.locator(".upload-state").inner_text()
    assert sorted(sent) == [2, 3], "only the parts S3 did not hold were sent again"

    session = UploadSession.objects.get()
    assert session.state == UploadState.COMPLETED and session.asset is not None
    head = s3.head_object(Bucket=session.bucket, Key=session.key)
    assert head["ContentLength"] == video.stat().st_size


def test_refusals_are_explained_before_a_byte_is_sent(web, new_page, make_user, tmp_path):
    from studio.models import UploadSession

    make_user("alice", role=Role.PUBLISHER)
    page = new_page("alice")
    page.goto(web.url("/studio/upload/"))
    notes = make_text(tmp_path / "notes.txt")
    picture = make_png(tmp_path / "holiday.mp4")
    page.set_input_files("#files", [str(notes), str(picture)])
    page.get_by_role("button", name="Start upload").click()
    by_name = {
        name: page.locator(f'.upload-item[data-name="{name}"]') for name in ("notes.txt", "holiday.mp4")
    }
    for item in by_name.values():
        item.locator('.upload-message[role="alert"]').wait_for()
    assert "not a video file extension" in by_name["notes.txt"].inner_text()
    assert "does not start like any video container" in by_name["holiday.mp4"].inner_text()
    assert by_name["holiday.mp4"].get_attribute("data-state") == "failed"
    assert not UploadSession.objects.exists()


def test_cancel_aborts_the_upload_in_storage(web, new_page, make_user, s3, tmp_path):
    from studio.models import UploadSession, UploadState

    make_user("alice", role=Role.PUBLISHER)
    video = fake_video(tmp_path / "cancel_me.mp4", 2 * SMALL_PARTS + 10)
    page = new_page("alice")
    page.goto(web.url("/studio/upload/"))
    # Hold every part so that the upload is surely in flight when Cancel is pressed.
    held = []
    page.route(
        f"{settings.S3_PUBLIC_ENDPOINT_URL}/**",
        lambda route: held.append(route) if route.request.method == "PUT" else route.continue_(),
    )
    page.set_input_files("#files", str(video))
    page.get_by_role("button", name="Start upload").click()
    item = page.locator(".upload-item")
    page.wait_for_function("() => document.querySelector('.upload-item').dataset.state === 'uploading'")
    item.get_by_role("button", name="Cancel").click()
    page.wait_for_function("() => document.querySelector('.upload-message').textContent.includes('deleted')")
    session = UploadSession.objects.get()
    assert session.state == UploadState.ABORTED
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        s3.list_parts(Bucket=session.bucket, Key=session.key, UploadId=session.upload_id)
