"""The job page's timeline: units per worker over time, and how many waited."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console.gantt import job_timeline
from pipeline.models import Unit, UnitState
from tests.console.factories import job_with_units

pytestmark = pytest.mark.django_db


def unit(rendition, chunk, state, worker, start_s, end_s, t0):
    return {
        "rendition": rendition, "chunk__index": chunk, "state": state, "worker": worker,
        "started_at": t0 + timedelta(seconds=start_s) if start_s is not None else None,
        "finished_at": t0 + timedelta(seconds=end_s) if end_s is not None else None,
    }  # fmt: skip


def test_bars_sit_on_their_worker_row_at_their_time():
    t0 = timezone.now() - timedelta(minutes=5)
    units = [
        unit("h264-360p", 0, "done", "w1", 0, 10, t0),
        unit("h264-360p", 1, "done", "w2", 0, 20, t0),
        unit("h264-240p", 0, "failed", "w1", 10, 40, t0),
        unit("h264-240p", 1, "queued", "", None, None, t0),
    ]
    chart = job_timeline(job_started=t0, units=units, now=t0 + timedelta(seconds=60))
    assert chart["workers"] == ["w1", "w2"] and chart["span_s"] == 40
    first, second, failed = chart["bars"]
    assert first["y"] == failed["y"] != second["y"], "w1's units share a row"
    assert first["x"] == second["x"] and failed["x"] > first["x"]
    assert failed["w"] == pytest.approx(second["w"] * 1.5, abs=0.2), "30 s against 20 s"
    assert "h264-240p chunk 1: failed, 30.0 s from +10.0 s" in failed["title"]
    assert chart["queue_peak"] == 4, "all four waited at the start"
    svg = str(chart["svg"])
    assert svg.count("<rect") == 3 and "waiting (peak 4)" in svg and ">w1<" in svg


def test_no_timeline_before_a_unit_starts():
    t0 = timezone.now()
    assert job_timeline(job_started=t0, units=[unit("a", 0, "queued", "", None, None, t0)], now=t0) is None


def test_job_page_draws_the_timeline(ops_client, make_user):
    job = job_with_units(make_user("pub"), unit_states={"h264-240p": [UnitState.DONE, UnitState.RUNNING]})
    t0 = timezone.now() - timedelta(seconds=30)
    for n, u in enumerate(Unit.objects.filter(job=job).order_by("pk")):
        Unit.objects.filter(pk=u.pk).update(worker=f"host-a.{n}", started_at=t0 + timedelta(seconds=n * 5),
                                            finished_at=t0 + timedelta(seconds=20) if n == 0 else None)  # fmt: skip
    url = reverse("console:job", kwargs={"job_id": job.pk})
    page = ops_client.get(url).content.decode()
    assert 'id="timeline"' in page and "host-a.0" in page and "host-a.1" in page
    assert "2 units on 2 workers" in page
