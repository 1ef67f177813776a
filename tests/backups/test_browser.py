"""A running backup's page in a real browser (the studio's browser fixtures: Debian's Chromium
through Playwright, daphne serving config.asgi): the figures follow the pushed snapshots, the
shared client (static/js/live.js) reconnects after the socket drops and shows the figures of the
new snapshot, and the page reloads into the final report once the run is over."""

import pytest
from django.utils import timezone

from backups import progress, selectors
from backups.models import BackupPolicy, BackupRun, RunPhase, RunState, RunTrigger, StorageEndpoint
from backups.services import runs
from core.roles import Role
from tests.pipeline.conftest import ladders  # noqa: F401 - fixture
from tests.studio.test_browser import (  # noqa: F401 - fixtures
    RECONNECTED,
    WATCH_SOCKETS,
    chromium,
    off_the_loop,
    signed_in_page,
    static_root,
    web,
    web_server,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def operator_page(chromium, web, make_user):  # noqa: F811
    make_user("olga", role=Role.OPERATIONS)
    with signed_in_page(chromium, web, "olga") as page:
        yield page


def _push(run: BackupRun) -> None:
    snapshot = selectors.progress_snapshot(kind="run", pk=run.pk)
    off_the_loop(progress.publish_rollback_unsafe, "run", run.pk, snapshot)


def test_run_page_follows_progress_reconnects_and_reloads_when_over(web, operator_page):  # noqa: F811
    platform, _ = StorageEndpoint.objects.get_or_create(name="platform")
    policy = BackupPolicy.objects.create(
        name="browser", destination_endpoint=platform, destination_bucket="${S3_BUCKET_BACKUP}",
        destination_prefix="browser/",
    )  # fmt: skip
    run = runs.run_start(policy=policy, trigger=RunTrigger.MANUAL)  # not queued: the test drives it
    page = operator_page
    page.goto(web.url(f"/backups/runs/{run.pk}/"))
    status = page.locator("[data-live-status]")
    status.get_by_text("Live: figures update").wait_for()
    page.evaluate("window.__sameDocument = true")

    BackupRun.objects.filter(pk=run.pk).update(objects_scanned=42)
    _push(run)
    page.locator('[data-field="objects_scanned"]', has_text="42").wait_for()

    # Counted while the socket is down: the new connection's snapshot shows it.
    page.evaluate("window.__sockets[0].close()")
    BackupRun.objects.filter(pk=run.pk).update(objects_scanned=77)
    page.wait_for_function(RECONNECTED)
    page.locator('[data-field="objects_scanned"]', has_text="77").wait_for()
    status.get_by_text("Live: figures update").wait_for()

    BackupRun.objects.filter(pk=run.pk).update(
        state=RunState.SUCCEEDED, phase=RunPhase.DONE, finished_at=timezone.now()
    )
    _push(run)
    page.wait_for_function("() => window.__sameDocument === undefined")  # reloaded
    page.locator('[data-field="state_label"]', has_text="Succeeded").wait_for()
    assert page.locator("[data-live-url]").count() == 0
    assert page.evaluate("window.__sockets.length") == 0, "a finished run's page opens no socket"
