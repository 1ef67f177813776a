"""The job page's timeline in a real browser (Debian's Chromium through Playwright, daphne):
drawn at its full width, one labelled row per worker, a tooltip per bar."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.roles import Role
from pipeline.models import Unit, UnitState
from tests.console.factories import job_with_units
from tests.pipeline.conftest import ladders  # noqa: F401 - fixture
from tests.studio.test_browser import chromium, signed_in_page, static_root, web, web_server  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_timeline_draws_a_row_per_worker_with_tooltips(chromium, web, make_user, ladders):  # noqa: F811
    make_user("olga", role=Role.OPERATIONS)
    job = job_with_units(make_user("pat", role=Role.PUBLISHER),
                         unit_states={"h264-240p": [UnitState.DONE, UnitState.DONE, UnitState.FAILED]}, chunks=3)  # fmt: skip
    t0 = timezone.now() - timedelta(minutes=2)
    for n, unit in enumerate(Unit.objects.filter(job=job).order_by("pk")):
        Unit.objects.filter(pk=unit.pk).update(
            worker=f"media-{n % 2}",
            started_at=t0 + timedelta(seconds=10 * n),
            finished_at=t0 + timedelta(seconds=10 * n + 8),
        )
    with signed_in_page(chromium, web, "olga") as page:  # noqa: F811
        page.goto(web.url(f"/ops/jobs/{job.pk}/"))
        svg = page.locator("#timeline svg.gantt")
        svg.wait_for()
        box = svg.bounding_box()
        assert box["width"] >= 700 and box["height"] > 60, box
        labels = page.locator("#timeline svg text.label").all_text_contents()
        assert "media-0" in labels and "media-1" in labels and any(t.startswith("waiting") for t in labels)
        bars = page.locator("#timeline svg rect.bar")
        assert bars.count() == 3
        assert (
            page.locator("#timeline svg rect.unit-failed title")
            .text_content()
            .startswith("h264-240p chunk 3: failed, 8.0 s")
        )
        failed = page.locator("#timeline svg rect.unit-failed").bounding_box()
        first = bars.first.bounding_box()
        assert failed["x"] > first["x"] + first["width"], "the failed unit ran after the first one"
