"""Security pages: parse, authorize, call one service, render."""

from __future__ import annotations

import csv
import hmac
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.csv_cells import csv_row
from core.models import Alert
from core.roles import permission_required
from security import selectors
from security.forms import AcknowledgeForm, AssignForm, ResolveForm, UndoForm, ViolationFilterForm
from security.models import ResponseAction, Violation
from security.policy import PolicyValidationError, policy_set_current
from security.services import alert_flow, violations
from security.services.ec2_events import EventRejected, ec2_event_receive
from security.services.responses import ResponseError, response_undo

logger = logging.getLogger(__name__)

_ACCESS = "access_security"


def _violation_or_404(pk: int) -> Violation:
    try:
        return selectors.violation_detail(pk=pk)
    except Violation.DoesNotExist:
        raise Http404("No such violation") from None


def _alert_or_404(pk: int) -> Alert:
    try:
        return selectors.alert_detail(pk=pk)
    except Alert.DoesNotExist:
        raise Http404("No such alert") from None


@permission_required(_ACCESS)
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "security/home.html",
        {
            "alerts": selectors.security_alerts(limit=30),
            "counts": selectors.violation_counts(),
            "regions": settings.AWS_REGIONS,
            "simulated": bool(settings.AWS_ENDPOINT_URL_EC2),
            "allowlist": settings.SECURITY_LAUNCH_ALLOWLIST,
        },
    )


def _filtered(request: HttpRequest):
    filters = selectors.ViolationFilters.from_query(request.GET)
    qs = selectors.violations_list(filters=filters)
    if filters.assignee == "me":
        qs = qs.filter(assignee=request.user)
    return filters, qs


@permission_required(_ACCESS)
def violation_list(request: HttpRequest) -> HttpResponse:
    filters, qs = _filtered(request)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "security/violations.html",
        {
            "page": page,
            "form": ViolationFilterForm(request.GET or None, policies=selectors.violation_policies()),
            "filters": filters,
            "query": query.urlencode(),
        },
    )


@permission_required(_ACCESS)
def violation_export_csv(request: HttpRequest) -> HttpResponse:
    _, qs = _filtered(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="violations-{timezone.now():%Y%m%d-%H%M}.csv"'
    writer = None
    for violation in qs.iterator(chunk_size=500):
        row = selectors.violation_export_row(violation)
        # Names and tags are whoever launched the instance's text: no formula reaches a sheet.
        row = csv_row({**row, "checks": json.dumps(row["checks"])})
        if writer is None:
            writer = csv.DictWriter(response, fieldnames=list(row))
            writer.writeheader()
        writer.writerow(row)
    if writer is None:
        response.write("id,policy,severity,state\r\n")
    return response


@permission_required(_ACCESS)
def violation_export_json(request: HttpRequest) -> JsonResponse:
    _, qs = _filtered(request)
    rows = [selectors.violation_export_row(v) for v in qs.iterator(chunk_size=500)]
    response = JsonResponse(
        {"exported_at": timezone.now().isoformat(), "count": len(rows), "violations": rows}
    )
    response["Content-Disposition"] = f'attachment; filename="violations-{timezone.now():%Y%m%d-%H%M}.json"'
    return response


@permission_required(_ACCESS)
def violation_detail(request: HttpRequest, violation_id: int) -> HttpResponse:
    violation = _violation_or_404(violation_id)
    ack_initial = {"expires_at": (timezone.now() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")}
    return render(
        request,
        "security/violation_detail.html",
        {
            "v": violation,
            "checks": violation.evidence.get("checks", []),
            "audit": selectors.violation_audit(violation=violation),
            "responses": selectors.violation_responses(violation=violation),
            "ack_form": AcknowledgeForm(initial=ack_initial),
            "assign_form": AssignForm(
                initial={"assignee": violation.assignee_id}, reviewers=selectors.reviewers()
            ),
            "resolve_form": ResolveForm(),
            "config_json": json.dumps(violation.instance.config, indent=2, sort_keys=True, default=str),
        },
    )


def _form_errors(request: HttpRequest, form) -> None:
    for field, errors in form.errors.items():
        for error in errors:
            messages.error(request, f"{field}: {error}" if field != "__all__" else error)


@permission_required(_ACCESS)
@require_POST
def violation_acknowledge(request: HttpRequest, violation_id: int) -> HttpResponse:
    violation = _violation_or_404(violation_id)
    form = AcknowledgeForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return redirect("security:violation", violation_id=violation_id)
    try:
        violations.violation_acknowledge(
            violation=violation, reviewer=request.user, justification=form.cleaned_data["justification"],
            expires_at=form.cleaned_data["expires_at"],
        )  # fmt: skip
    except violations.ViolationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, "Acknowledged. It reopens when it expires or when the configuration changes."
        )
    return redirect("security:violation", violation_id=violation_id)


@permission_required(_ACCESS)
@require_POST
def violation_assign(request: HttpRequest, violation_id: int) -> HttpResponse:
    violation = _violation_or_404(violation_id)
    form = AssignForm(request.POST, reviewers=selectors.reviewers())
    if not form.is_valid():
        _form_errors(request, form)
        return redirect("security:violation", violation_id=violation_id)
    try:
        violations.violation_assign(
            violation=violation, assignee=form.cleaned_data["assignee"], actor=request.user
        )
    except violations.ViolationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Assigned.")
    return redirect("security:violation", violation_id=violation_id)


@permission_required(_ACCESS)
@require_POST
def violation_resolve(request: HttpRequest, violation_id: int) -> HttpResponse:
    violation = _violation_or_404(violation_id)
    form = ResolveForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return redirect("security:violation", violation_id=violation_id)
    try:
        violations.violation_resolve(violation=violation, actor=request.user, note=form.cleaned_data["note"])
    except violations.ViolationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Resolved. If the rule still fires, the next evaluation reopens it.")
    return redirect("security:violation", violation_id=violation_id)


@permission_required(_ACCESS)
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = _alert_or_404(alert_id)
    ack_initial = {"expires_at": (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")}
    return render(
        request,
        "security/alert_detail.html",
        {
            "alert": alert,
            "responses": selectors.alert_responses(alert=alert),
            "violation": selectors.alert_violation(alert=alert),
            "evidence_json": json.dumps(alert.evidence, indent=2, sort_keys=True, default=str),
            "ack_form": AcknowledgeForm(initial=ack_initial),
        },
    )


@permission_required(_ACCESS)
@require_POST
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = _alert_or_404(alert_id)
    form = AcknowledgeForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return redirect("security:alert", alert_id=alert_id)
    try:
        alert_flow.security_alert_acknowledge(
            alert=alert, reviewer=request.user, justification=form.cleaned_data["justification"],
            expires_at=form.cleaned_data["expires_at"],
        )  # fmt: skip
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Alert acknowledged.")
    return redirect("security:alert", alert_id=alert_id)


@permission_required(_ACCESS)
@require_POST
def alert_resolve(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = _alert_or_404(alert_id)
    alert_flow.security_alert_resolve(alert=alert, actor=request.user)
    messages.success(request, "Alert resolved.")
    return redirect("security:alert", alert_id=alert_id)


@permission_required(_ACCESS)
@require_POST
def response_undo_view(request: HttpRequest, response_id: int) -> HttpResponse:
    try:
        response = ResponseAction.objects.get(pk=response_id)
    except ResponseAction.DoesNotExist:
        raise Http404("No such response") from None
    form = UndoForm(request.POST)
    form.is_valid()  # both fields are optional here; the service says what a violation needs
    try:
        response_undo(
            response=response, actor=request.user, justification=form.cleaned_data.get("justification") or "",
            expires_at=form.cleaned_data.get("expires_at"),
        )  # fmt: skip
    except ResponseError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Undone: {response.get_kind_display()} on {response.target_id}.")
    back = request.POST.get("next", "")
    if back.startswith("/security/"):
        return redirect(back)
    return (
        redirect("security:alert", alert_id=response.alert_id)
        if response.alert_id
        else redirect("security:home")
    )


@permission_required(_ACCESS)
def inventory(request: HttpRequest) -> HttpResponse:
    kind = request.GET.get("kind", "")
    include_gone = request.GET.get("gone") == "1"
    return render(
        request,
        "security/inventory.html",
        {
            "instances": selectors.inventory_list(kind=kind, include_gone=include_gone),
            "kind": kind,
            "gone": include_gone,
        },
    )


@permission_required(_ACCESS)
def policies(request: HttpRequest) -> HttpResponse:
    try:
        policy_set, error = policy_set_current(), None
    except PolicyValidationError as exc:
        policy_set, error = [], str(exc)
    return render(request, "security/policies.html", {"policies": policy_set, "error": error})


def _bearer_ok(request: HttpRequest) -> bool:
    expected = settings.SECURITY_EVENTS_TOKEN
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # No configured token means no webhook at all, never an open one.
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.encode(), expected.encode())
    )


@csrf_exempt  # machines post here with a bearer token, not a browser session
@require_POST
def ec2_events(request: HttpRequest) -> JsonResponse:
    """EventBridge EC2 state-change / CloudTrail RunInstances events, handled before answering."""
    if not _bearer_ok(request):
        logger.warning(
            "EC2 event refused: bad or missing bearer token from %s", selectors.client_address(request)
        )
        return JsonResponse({"error": "a valid bearer token is required"}, status=401)
    try:
        body = json.loads(request.body)
    except RecursionError:
        return JsonResponse({"error": "malformed event: JSON nested too deeply"}, status=400)
    except ValueError as exc:
        return JsonResponse({"error": f"malformed event: not JSON: {exc}"}, status=400)
    try:
        result = ec2_event_receive(body=body, source="webhook")
    except EventRejected as exc:
        return JsonResponse({"error": f"malformed event: {exc}"}, status=400)
    # Every instance was handled on its own: ids EC2 does not know, launches EC2 contradicts
    # (alerted, not acted on) and the cloud's errors are listed in the answer.
    return JsonResponse(result.as_dict(), status=200)
