"""The operations console's pages. Each view parses, authorizes, calls one selector or service,
and renders; actions are CSRF-protected POSTs that redirect back with a message."""

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from console import charts, gantt, selectors, services
from console.forms import (
    BulkActionForm,
    ChartWindowForm,
    EventFilterForm,
    JobActionForm,
    JobFilterForm,
    RequeueForm,
)
from console.selectors import ACTIVE
from core.health import health_report
from core.roles import permission_required
from pipeline import selectors as pipeline_selectors
from pipeline.models import UnitState

OPS = "access_operations"
MAX_REFUSALS_SHOWN = 10


def _query_without(request: HttpRequest, *drop: str, **changes: str) -> str:
    """The request's query string without the `drop` keys (cursors, a filter being replaced),
    with `changes` set when non-empty."""
    query = request.GET.copy()
    for key in drop:
        query.pop(key, None)
    for key, value in changes.items():
        if value:
            query[key] = value
    return query.urlencode()


def _back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    """Back to the page the form was posted from (same site only)."""
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = default
    return redirect(target)


@permission_required(OPS)
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "console/home.html", {
        "health": health_report(),
        "counts": selectors.job_state_counts(selectors.JobFilters()),
        "queues": selectors.queues_now(),
        "failures": selectors.jobs_recent_failures(),
        "rejections": pipeline_selectors.ingest_rejections(),
    })


@permission_required(OPS)
@require_GET
def jobs(request: HttpRequest) -> HttpResponse:
    form = JobFilterForm(request.GET, profiles=selectors.profiles_choices())
    form.is_valid()
    filters = form.filters()
    page = selectors.jobs_page(
        filters, after=request.GET.get("after"), before=request.GET.get("before"), per_page=settings.CONSOLE_JOBS_PER_PAGE
    )
    query = _query_without(request, "after", "before")
    counts = selectors.job_state_counts(filters)
    states = [("", "All", counts["total"]), (ACTIVE, "Active", counts["active"]), *counts["states"]]
    return render(request, "console/jobs.html", {
        "form": form,
        "filters": filters,
        "page": page,
        "state_links": [
            {"state": state, "label": label, "count": n, "current": state == filters.state,
             "query": _query_without(request, "after", "before", "state", state=state)}
            for state, label, n in states
        ],
        "publishers": selectors.publishers_with_assets(),
        "query": query,
        "first_page": page.prev_cursor is None,
        "actions": services.JobAction.choices,
    })


@permission_required(OPS)
@require_POST
def jobs_bulk(request: HttpRequest) -> HttpResponse:
    form = BulkActionForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return _back(request, reverse("console:jobs"))
    result = services.jobs_bulk_apply(job_ids=form.cleaned_data["job"], action=form.cleaned_data["action"],
                                      actor=request.user)
    (messages.success if result.done else messages.warning)(request, result.summary())
    for _, reason in result.refused[:MAX_REFUSALS_SHOWN]:
        messages.error(request, reason)
    if len(result.refused) > MAX_REFUSALS_SHOWN:
        messages.error(request, f"…and {len(result.refused) - MAX_REFUSALS_SHOWN} more refused.")
    return _back(request, reverse("console:jobs"))


@permission_required(OPS)
@require_GET
def job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_detail(job_id=job_id)
    unit_state = request.GET.get("units", "")
    unit_state = unit_state if unit_state in UnitState.values else ""
    renditions, chunks, units = selectors.job_units(job=job)
    unit_counts = {state: sum(1 for u in units if u["state"] == state) for state in UnitState.values}
    return render(request, "console/job.html", {
        "job": job,
        "renditions": renditions,
        "chunks": chunks,
        "grid": selectors.unit_grid(renditions=renditions, chunks=chunks, units=units),
        "timeline": gantt.job_timeline(job_started=job.started_at, units=units, now=timezone.now()),
        "units": [u for u in units if u["state"] == unit_state] if unit_state else units,
        "unit_state": unit_state,
        "unit_tabs": [(value, label, unit_counts[value]) for value, label in UnitState.choices],
        "units_total": len(units),
        "unit_summary": ", ".join(f"{n} {label.lower()}" for value, label in UnitState.choices if (n := unit_counts[value])),
        "events": selectors.subject_events(subject_type="pipeline.encodejob", subject_id=job.pk),
        "actions": selectors.job_actions(job=job, unit_counts=unit_counts),
        "evaluation": job.evaluations.order_by("-created_at", "-id").first(),
        "reviews": list(job.reviews.select_related("actor")),
    })


@permission_required(OPS)
@require_POST
def job_action(request: HttpRequest, job_id: int) -> HttpResponse:
    form = JobActionForm(request.POST)
    default = reverse("console:job", kwargs={"job_id": job_id})
    if not form.is_valid():
        messages.error(request, "Unknown action.")
        return _back(request, default)
    try:
        messages.success(request, services.job_action_apply(job_id=job_id, action=form.cleaned_data["action"],
                                                            actor=request.user))
    except services.ActionRefused as exc:
        messages.error(request, str(exc))
    return _back(request, default)


@permission_required(OPS)
@require_GET
def workers(request: HttpRequest) -> HttpResponse:
    window = ChartWindowForm(request.GET)
    hours = window.cleaned_data["hours"] if window.is_valid() else 3
    conn = selectors.redis_client()
    return render(request, "console/workers.html", {
        "workers": selectors.workers_overview(conn=conn),
        "queues": selectors.queues_now(conn=conn),
        "failed": selectors.failed_jobs(conn=conn),
        "hours": hours,
        "hour_choices": [1, 3, 6, 24],
        "throughput": charts.throughput_chart(selectors.throughput_series(hours=hours)),
        "depths": charts.queue_depth_chart(selectors.queue_depth_series(hours=hours)),
    })


@permission_required(OPS)
@require_POST
def failed_requeue(request: HttpRequest) -> HttpResponse:
    form = RequeueForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say which queue and which RQ job to requeue.")
        return _back(request, reverse("console:workers"))
    try:
        messages.success(request, services.failed_job_requeue(
            queue_name=form.cleaned_data["queue"], rq_id=form.cleaned_data["rq_id"], actor=request.user
        ))
    except services.ActionRefused as exc:
        messages.error(request, str(exc))
    return _back(request, reverse("console:workers"))


@permission_required(OPS)
@require_GET
def events(request: HttpRequest) -> HttpResponse:
    form = EventFilterForm(request.GET)
    form.is_valid()
    page = selectors.events_page(
        form.filters(), after=request.GET.get("after"), before=request.GET.get("before"),
        per_page=settings.CONSOLE_EVENTS_PER_PAGE,
    )
    for event in page.items:
        event.subject_url = selectors.subject_url(
            subject_type=event.subject_type, subject_id=event.subject_id, user=request.user
        )
    query = _query_without(request, "after", "before")
    return render(request, "console/events.html", {
        "form": form, "page": page, "query": query, "types": selectors.event_types(),
    })
