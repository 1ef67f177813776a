"""`manage.py seed_demo`: realistic rows at scale, consistent with the pipeline's invariants."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count, F, Q
from django.utils import timezone

from console.models import QueueSample
from core.models import Event
from pipeline.models import EncodeJob, JobState, Rendition, RenditionState, Unit, UnitState

pytestmark = pytest.mark.django_db


def test_seed_demo_writes_jobs_of_about_forty_units_that_keep_the_pipelines_invariants(redis_conn):
    out = StringIO()
    call_command("seed_demo", jobs=120, publishers=5, stdout=out)
    assert "Seeded 120 jobs" in out.getvalue()
    assert EncodeJob.objects.count() == 120
    planned = EncodeJob.objects.filter(units__isnull=False).distinct().count()
    assert 30 <= Unit.objects.count() / planned <= 50, "about 40 units a job"
    assert EncodeJob.objects.values("asset__publisher").distinct().count() == 5

    # A rendition's counter is its done units; a published job has every unit done.
    for r in Rendition.objects.annotate(done=Count("units", filter=Q(units__state=UnitState.DONE))):
        assert r.units_done == r.done and r.units_total == r.units.count()
        if r.state == RenditionState.READY:
            assert r.done == r.units_total
    assert not Unit.objects.filter(job__state=JobState.PUBLISHED).exclude(state=UnitState.DONE).exists()
    for job in EncodeJob.objects.filter(state=JobState.FAILED):
        assert job.failure_reason
    assert not Unit.objects.filter(state=UnitState.DONE, finished_at__isnull=True).exists()
    assert not EncodeJob.objects.filter(finished_at__lt=F("created_at")).exists()
    assert not EncodeJob.objects.filter(finished_at__gt=timezone.now()).exists(), "nothing happens in the future"

    # The event log tells each job's story, oldest first in id order.
    assert Event.objects.filter(type="job.created").count() == 120
    times = list(Event.objects.filter(subject_type__startswith="pipeline.").order_by("id").values_list("created_at", flat=True))
    assert times == sorted(times)
    assert QueueSample.objects.exists()

    # A second run adds to the first (new ids, the same publishers).
    call_command("seed_demo", jobs=10, publishers=5, stdout=StringIO())
    assert EncodeJob.objects.count() == 130
    assert EncodeJob.objects.values("asset__publisher").distinct().count() == 5


def test_seed_demo_refuses_nonsense(capsys):
    with pytest.raises(SystemExit):
        call_command("seed_demo", jobs=0, stdout=StringIO(), stderr=StringIO())
