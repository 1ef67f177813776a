"""The console's live pages in a real browser (Debian's Chromium through Playwright) against
daphne serving config.asgi (the studio's browser fixtures): rows and counts follow state changes
without a reload, a job that starts appears at the top, the grid recolours as units run, and
the keyboard reaches every action. The shared websocket client (static/js/live.js) reconnects
after a drop and asks for a fresh snapshot when a sequence number goes missing."""


import re

import pytest

from core.roles import Role
from pipeline import progress
from pipeline.models import JobState, Unit, UnitState
from pipeline.services.jobs import job_cancel, job_probe_start
from pipeline.services.units import unit_finish, unit_start
from tests.console.factories import job_with_units
from tests.pipeline.conftest import ladders  # noqa: F401 - fixture
from tests.studio.test_browser import (  # noqa: F401 - fixtures
    RECONNECTED,
    WATCH_SOCKETS,
    chromium,
    signed_in_page,
    static_root,
    web,
    web_server,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
Q, R, D = UnitState.QUEUED, UnitState.RUNNING, UnitState.DONE


@pytest.fixture
def operator_page(chromium, web, make_user):  # noqa: F811
    make_user("olga", role=Role.OPERATIONS)
    with signed_in_page(chromium, web, "olga") as page:
        yield page


def test_jobs_list_follows_state_changes_and_new_jobs_live(web, operator_page, make_user, ladders):  # noqa: F811
    publisher = make_user("pat", role=Role.PUBLISHER)
    running = job_with_units(publisher, unit_states={"h264-240p": [R, Q]})
    page = operator_page
    page.goto(web.url("/ops/jobs/"))
    page.wait_for_selector("#live-status.live")
    row = page.locator(f'tr[data-job="{running.pk}"]')
    assert row.locator('[data-role="state"]').inner_text() == "Encoding"

    job_cancel(job_id=running.pk)
    row.locator('[data-role="state"]', has_text="Cancelled").wait_for()
    page.locator('[data-count="cancelled"]', has_text="1").wait_for()

    fresh = job_with_units(publisher, state=JobState.QUEUED)
    job_probe_start(job_id=fresh.pk)  # its first state change announces it
    page.locator(f'tbody tr:first-child[data-job="{fresh.pk}"]').wait_for()
    assert "new job" in page.locator("#new-jobs").inner_text()
    page.locator('[data-count="total"]', has_text="2").wait_for()

    # Keyboard: tick the new job and cancel it with the bulk form.
    page.locator(f'tr[data-job="{fresh.pk}"] input[name="job"]').focus()
    page.keyboard.press("Space")
    page.select_option("#bulk-action", "cancel")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Apply to selected").press("Enter")
    page.locator(".messages", has_text="Cancel: done for 1 job").wait_for()


def test_job_page_grid_recolours_as_units_run(web, operator_page, make_user, ladders):  # noqa: F811
    publisher = make_user("pat", role=Role.PUBLISHER)
    job = job_with_units(publisher, unit_states={"h264-240p": [Q, Q], "aac-96k": [Q]})
    unit = Unit.objects.filter(job=job, chunk__index=0).first()
    page = operator_page
    page.goto(web.url(f"/ops/jobs/{job.pk}/"))
    page.wait_for_selector("#live-status.live")
    cell = page.locator(f'#grid td[data-unit="{unit.pk}"]')
    assert "unit-queued" in cell.get_attribute("class")

    unit_start(unit_id=unit.pk, worker="w-test")
    page.wait_for_selector(f'#grid td.unit-running[data-unit="{unit.pk}"]')
    unit_finish(unit_id=unit.pk, result={"wall_s": 1.0, "frames": 100, "command": "ffmpeg", "log_tail": ""})
    page.wait_for_selector(f'#grid td.unit-done[data-unit="{unit.pk}"]')
    assert page.locator(f'tr[data-unit-row="{unit.pk}"] [data-role="ustate"]').inner_text() == "done"
    assert page.locator("#changed").is_visible(), "the page offers a reload for the new details"

    # Every action is a button the keyboard reaches; the cell links to its unit's row.
    page.locator(f'#grid td[data-unit="{unit.pk}"] a').focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf".*#unit-{unit.pk}$"))  # the page reports it a moment later when busy
    page.get_by_role("button", name="Raise priority").focus()
    page.keyboard.press("Enter")
    page.locator(".messages", has_text="now has priority 1").wait_for()


def _silently(unit: Unit, state: str) -> None:
    """The unit changes and its message is lost: the row moves, the job's number is used up."""
    Unit.objects.filter(pk=unit.pk).update(state=state)
    progress.next_seq(unit.job_id)


def test_job_page_reconnects_after_the_socket_drops(web, operator_page, make_user, ladders):  # noqa: F811
    publisher = make_user("pat", role=Role.PUBLISHER)
    job = job_with_units(publisher, unit_states={"h264-240p": [Q, Q]})
    first, second = Unit.objects.filter(job=job).order_by("chunk__index")
    page = operator_page
    page.goto(web.url(f"/ops/jobs/{job.pk}/"))
    page.wait_for_selector("#live-status.live")
    assert page.evaluate("window.__sockets.length") == 1

    _silently(first, R)  # while the socket is up, nothing tells the page
    page.evaluate("window.__sockets[0].close()")  # the connection drops
    page.wait_for_function(RECONNECTED)
    page.wait_for_selector("#live-status.live")
    # The page said so meanwhile, then the new connection's snapshot brought the lost change.
    shown = page.evaluate("window.__status")
    assert any(text.startswith("Disconnected; retrying in") for text in shown), shown
    assert shown[-2:] == ["Reconnecting…", "Live"], shown
    page.wait_for_selector(f'#grid td.unit-running[data-unit="{first.pk}"]')

    # And live messages flow on the new connection.
    unit_start(unit_id=second.pk, worker="w-test")
    page.wait_for_selector(f'#grid td.unit-running[data-unit="{second.pk}"]')
    assert page.evaluate("window.__sockets.length") == 2


def test_job_page_asks_for_a_fresh_snapshot_when_a_sequence_number_goes_missing(
    web, operator_page, make_user, ladders  # noqa: F811
):
    publisher = make_user("pat", role=Role.PUBLISHER)
    job = job_with_units(publisher, unit_states={"h264-240p": [Q, Q]})
    first, second = Unit.objects.filter(job=job).order_by("chunk__index")
    page = operator_page
    asked: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: asked.append(payload)))
    page.goto(web.url(f"/ops/jobs/{job.pk}/"))
    page.wait_for_selector("#live-status.live")

    _silently(first, R)  # number 1 is lost
    unit_start(unit_id=second.pk, worker="w-test")  # number 2 arrives: a gap before it
    page.wait_for_selector(f'#grid td.unit-running[data-unit="{second.pk}"]')
    assert "unit-queued" in page.locator(f'#grid td[data-unit="{first.pk}"]').get_attribute("class")

    # The gap stays open (it is not a late message): the page asks for a snapshot, which has it.
    page.wait_for_selector(f'#grid td.unit-running[data-unit="{first.pk}"]', timeout=10_000)
    assert '{"action":"snapshot"}' in asked, asked
    assert page.evaluate("window.__sockets.length") == 1, "no reconnect, no reload: the same socket"
