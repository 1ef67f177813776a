"""Backups pages (operations staff only): each view parses, authorizes, calls one service or
selector, renders."""

import csv
import hmac
import json
import logging

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from backups import charts, selectors
from backups.forms import RestoreForm, RunStartForm
from backups.models import Encryption, RunTrigger
from backups.services import intake, keys, locks, restore, retention, runs
from core.csv_cells import csv_row
from core.roles import permission_required
from core.selectors import alerts_open

logger = logging.getLogger(__name__)

RUNS_PER_PAGE = 50
PLAN_ROWS = 200


def _int_or_none(value) -> int | None:
    return int(value) if value and str(value).isdigit() else None


@permission_required("access_operations")
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "backups/home.html",
        {
            "policies": selectors.policies_overview(),
            "alerts": alerts_open(source="backups"),
            "recent_runs": selectors.runs_list()[:8],
            "restores": selectors.restores_recent(limit=5),
        },
    )


@permission_required("access_operations")
@require_GET
def policy_detail(request: HttpRequest, policy_id: int) -> HttpResponse:
    policy = selectors.policy_detail(pk=policy_id)
    if policy is None:
        raise Http404("No such backup policy.")
    plan = retention.retention_plan(policy=policy)
    lock_ok, lock_text = locks.lock_support(policy)
    key_problems = keys.keys_problems() if policy.encryption == Encryption.CLIENT else []
    return render(
        request,
        "backups/policy_detail.html",
        {
            "policy": policy, "schedule": retention.schedule_of(policy), "plan": plan[:PLAN_ROWS],
            "plan_total": len(plan), "plan_going": sum(1 for v in plan if not v.keep), "lock_ok": lock_ok,
            "lock_text": lock_text, "holds": selectors.legal_holds(policy=policy), "key_problems": key_problems,
            "drill": policy.drills.first(), "drill_hours": settings.BACKUP_DRILL_HOURS,
        },
    )


@permission_required("access_operations")
@require_POST
def legal_hold(request: HttpRequest, policy_id: int) -> HttpResponse:
    policy = selectors.policy_detail(pk=policy_id)
    if policy is None:
        raise Http404("No such backup policy.")
    key, on = request.POST.get("key", "").strip(), request.POST.get("hold") == "on"
    version = selectors.hold_target(policy=policy, key=key) if key else None
    if version is None:
        messages.error(request, f"No backed-up object {key!r} in policy {policy.name}." if key else "Name an object key.")
        return redirect(reverse("backups:policy_detail", kwargs={"policy_id": policy.pk}))
    try:
        count = locks.legal_hold_set(version=version, on=on, actor=request.user)
    except locks.HoldRefused as exc:
        messages.error(request, f"Legal hold on {key}: {exc}.")
    else:
        messages.success(request, f"Legal hold {'set on' if on else 'cleared from'} {key} ({count} ledger version(s)).")
    return redirect(reverse("backups:policy_detail", kwargs={"policy_id": policy.pk}))


@permission_required("access_operations")
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    policy_id = _int_or_none(request.GET.get("policy"))
    state = request.GET.get("state") or None
    page = Paginator(selectors.runs_list(policy_id=policy_id, state=state), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    trend = selectors.runs_trend(policy_id=policy_id)
    return render(
        request,
        "backups/runs.html",
        {
            "page": page, "charts": charts.run_charts(trend), "trend": trend,
            "policies": selectors.policy_choices(), "states": selectors.run_states(),
            "policy_id": policy_id, "state": state or "", "query": request.GET.urlencode(),
        },
    )


@permission_required("access_operations")
@require_POST
def run_start(request: HttpRequest) -> HttpResponse:
    form = RunStartForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an enabled policy to run.")
        return redirect("backups:home")
    try:
        run = runs.run_start(
            policy=form.cleaned_data["policy"], trigger=RunTrigger.MANUAL,
            verify=form.cleaned_data.get("verify") or "plan", actor=request.user, enqueue=True,
        )
    except runs.RunAlreadyActive as exc:
        messages.error(request, f"{exc}: follow it here instead of starting another.")
        return redirect("backups:run_detail", run_id=exc.run.pk)
    messages.success(request, f"Run #{run.pk} of {run.policy.name} queued; a backup worker starts it shortly.")
    return redirect("backups:run_detail", run_id=run.pk)


@permission_required("access_operations")
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_detail(pk=run_id)
    if run is None:
        raise Http404("No such backup run.")
    return render(
        request,
        "backups/run_detail.html",
        {
            "run": run, "failures": selectors.run_failures(run=run), "tasks": selectors.run_tasks_summary(run=run),
            "failed_tasks": selectors.run_failed_tasks(run=run),
            "snapshot": selectors.progress_snapshot(kind="run", pk=run.pk),
        },
    )


def _runs_for_export(request: HttpRequest):
    return selectors.runs_list(
        policy_id=_int_or_none(request.GET.get("policy")), state=request.GET.get("state") or None
    )[: min(_int_or_none(request.GET.get("limit")) or 1000, 10000)]


class _Echo:
    def write(self, value):
        return value


def _csv_response(rows, fields, filename: str) -> StreamingHttpResponse:
    writer = csv.DictWriter(_Echo(), fieldnames=fields, extrasaction="ignore")

    def lines():
        yield writer.writeheader()
        for row in rows:
            yield writer.writerow(csv_row(row))  # object keys are anyone's text

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@permission_required("access_operations")
@require_GET
def runs_csv(request: HttpRequest) -> StreamingHttpResponse:
    rows = (selectors.run_export_row(r) for r in _runs_for_export(request))
    return _csv_response(rows, selectors.EXPORT_FIELDS, "backup-runs.csv")


@permission_required("access_operations")
@require_GET
def runs_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"runs": [selectors.run_export_row(r) for r in _runs_for_export(request)]})


@permission_required("access_operations")
@require_GET
def run_json(request: HttpRequest, run_id: int) -> JsonResponse:
    run = selectors.run_detail(pk=run_id)
    if run is None:
        raise Http404("No such backup run.")
    return JsonResponse(
        {
            "run": selectors.run_export_row(run),
            "tasks": selectors.run_tasks_summary(run=run),
            "failures": [selectors.failure_export_row(f) for f in selectors.run_failures(run=run)],
        }
    )


@permission_required("access_operations")
@require_GET
def run_failures_csv(request: HttpRequest, run_id: int) -> StreamingHttpResponse:
    run = selectors.run_detail(pk=run_id)
    if run is None:
        raise Http404("No such backup run.")
    fields = ["id", "run", "key", "check", "cause", "resolution", "detail", "action", "created_at", "resolved_at", "chain",
              "references"]  # fmt: skip

    def rows():
        for failure in selectors.run_failures(run=run):
            row = selectors.failure_export_row(failure)
            row["chain"] = " <- ".join(f"{s['step']}: {s['finding']}" for s in reversed(failure.chain))
            row["references"] = " ".join(ref["key"] for ref in failure.references)
            yield row

    return _csv_response(rows(), fields, f"backup-run-{run.pk}-failures.csv")


@permission_required("access_operations")
@require_POST
def failure_retry(request: HttpRequest, failure_id: int) -> HttpResponse:
    failure = selectors.failure_detail(pk=failure_id)
    if failure is None:
        raise Http404("No such failure.")
    from backups import jobs

    transaction.on_commit(lambda: jobs.failure_retry_enqueue(failure.pk))
    messages.success(request, f"Failure #{failure.pk} ({failure.key}) will be checked and repaired again.")
    return redirect(f"{reverse('backups:run_detail', kwargs={'run_id': failure.run_id})}#failure-{failure.pk}")


@permission_required("access_operations")
def restore_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = RestoreForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                created = restore.restore_create(
                    policy=data["policy"], scope=data["scope"], selector=data["selector"], as_of=data.get("as_of"),
                    target_endpoint=data.get("target_endpoint"), target_bucket=data.get("target_bucket", ""),
                    target_prefix=data.get("target_prefix", ""), actor=request.user, enqueue=True,
                )
            except restore.RestoreRejected as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Restore #{created.pk} of {created.objects_total} object(s) queued.")
                return redirect("backups:restore_detail", restore_id=created.pk)
        status = 400
    elif request.method == "GET":
        form = RestoreForm(initial={k: v for k, v in request.GET.items() if k in ("policy", "scope", "selector")})
        status = 200
    else:
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    return render(request, "backups/restore_form.html", {"form": form}, status=status)


@permission_required("access_operations")
@require_GET
def restore_detail(request: HttpRequest, restore_id: int) -> HttpResponse:
    found = selectors.restore_detail(pk=restore_id)
    if found is None:
        raise Http404("No such restore.")
    return render(
        request,
        "backups/restore_detail.html",
        {"restore": found, "items": selectors.restore_items(restore=found),
         "snapshot": selectors.progress_snapshot(kind="restore", pk=found.pk)},
    )


def _bearer_ok(request: HttpRequest) -> bool:
    expected = settings.S3_EVENTS_TOKEN
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # No configured token means no intake at all, never an open one.
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


@csrf_exempt  # a machine posts here, authenticated by its bearer token, not by a session
@require_POST
def s3_events(request: HttpRequest) -> JsonResponse:
    if not _bearer_ok(request):
        return JsonResponse({"error": "a valid bearer token is required"}, status=401)
    try:
        added = intake.s3_notification_receive(document=json.loads(request.body))
    except (ValueError, intake.NotificationRejected) as exc:
        return JsonResponse({"error": f"malformed notification: {exc}"}, status=400)
    return JsonResponse({"scan_requests": added}, status=202)
