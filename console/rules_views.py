"""Publish rules and reviews in the operations console: rule sets and their rules, publisher
verification, and the approve/reject decision on a job held for review."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from console.rules_forms import ReviewForm, RuleForm, RuleSetForm, VerifyForm
from core.roles import VERIFIED_PUBLISHERS_GROUP, permission_required
from pipeline.models import EncodeJob, JobState, Rule, RuleSet
from pipeline.services import publishing as publishing_services
from pipeline.services import rules as rules_services
from pipeline.services.common import JobActionRefused

OPS = "access_operations"


def _publishers():
    return (
        get_user_model().objects.filter(groups__permissions__codename="access_studio")
        .distinct().order_by("username").prefetch_related("groups")
    )


@permission_required(OPS)
@require_http_methods(["GET", "POST"])
def rules(request: HttpRequest) -> HttpResponse:
    """Every rule set with its rules; a form to create a set."""
    form = RuleSetForm(request.POST or None, prefix="new")
    if request.method == "POST":
        if form.is_valid():
            rule_set = rules_services.rule_set_save(form=form, actor=request.user)
            messages.success(request, f"Rule set “{rule_set.name}” created. Add its rules below.")
            return redirect("console:rule_set", rule_set_id=rule_set.pk)
        messages.error(request, "The rule set was not created: see the errors in the form.")
    publishers = [
        {"user": u, "verified": any(g.name == VERIFIED_PUBLISHERS_GROUP for g in u.groups.all())} for u in _publishers()
    ]
    return render(request, "console/rules.html", {
        "rule_sets": RuleSet.objects.prefetch_related("rules", "profiles", "publishers"),
        "form": form,
        "publishers": publishers,
        "held": EncodeJob.objects.filter(state=JobState.HELD).count(),
    })


@permission_required(OPS)
@require_http_methods(["GET", "POST"])
def rule_set(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    """Edit a set (POST with `save_set`) or add a rule to it (POST with `add_rule`)."""
    rule_set = get_object_or_404(RuleSet, pk=rule_set_id)
    set_form = RuleSetForm(instance=rule_set, prefix="set")
    rule_form = RuleForm(prefix="rule")
    if request.method == "POST":
        if "save_set" in request.POST:
            set_form = RuleSetForm(request.POST, instance=rule_set, prefix="set")
            if set_form.is_valid():
                rules_services.rule_set_save(form=set_form, actor=request.user)
                messages.success(request, f"Rule set “{rule_set.name}” saved.")
                return redirect("console:rule_set", rule_set_id=rule_set.pk)
        else:
            rule_form = RuleForm(request.POST, prefix="rule")
            if rule_form.is_valid():
                rule = rules_services.rule_save(form=rule_form, rule_set=rule_set, actor=request.user)
                messages.success(request, f"Rule added: {rule}.")
                return redirect("console:rule_set", rule_set_id=rule_set.pk)
        messages.error(request, "Nothing was saved: see the errors in the form.")
    return render(request, "console/rule_set.html", {
        "rule_set": rule_set,
        "rules": [(rule, RuleForm(instance=rule, prefix=f"r{rule.pk}")) for rule in rule_set.rules.all()],
        "set_form": set_form,
        "rule_form": rule_form,
    })


@permission_required(OPS)
@require_POST
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(Rule.objects.select_related("rule_set"), pk=rule_id)
    back = reverse("console:rule_set", kwargs={"rule_set_id": rule.rule_set_id})
    if "delete" in request.POST:
        label = str(rule)
        rules_services.rule_delete(rule=rule, actor=request.user)
        messages.success(request, f"Rule deleted: {label}.")
        return redirect(back)
    form = RuleForm(request.POST, instance=rule, prefix=f"r{rule.pk}")
    if form.is_valid():
        rule = rules_services.rule_save(form=form, rule_set=rule.rule_set, actor=request.user)
        messages.success(request, f"Rule saved: {rule}.")
    else:
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        messages.error(request, f"The rule was not saved: {errors}")
    return redirect(back)


@permission_required(OPS)
@require_POST
def publisher_verify(request: HttpRequest, user_id: int) -> HttpResponse:
    publisher = _publishers().filter(pk=user_id).first()
    if publisher is None:
        raise Http404("No such publisher.")
    form = VerifyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say whether to verify or unverify.")
    else:
        verified = form.cleaned_data["verified"]
        rules_services.publisher_verification_set(publisher=publisher, verified=verified, actor=request.user)
        messages.success(request, f"{publisher.get_username()} is {'now' if verified else 'no longer'} verified.")
    return redirect(reverse("console:rules") + "#publishers-h")


@permission_required(OPS)
@require_POST
def job_review(request: HttpRequest, job_id: int) -> HttpResponse:
    back = reverse("console:job", kwargs={"job_id": job_id}) + "#rules-h"
    form = ReviewForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        messages.error(request, f"Nothing was decided: {errors}")
        return redirect(back)
    try:
        job = publishing_services.job_review(
            job_id=job_id, decision=form.cleaned_data["decision"], reason=form.cleaned_data["reason"], actor=request.user
        )
    except EncodeJob.DoesNotExist as exc:
        raise Http404("No such job.") from exc
    except JobActionRefused as exc:
        messages.error(request, str(exc))
        return redirect(back)
    if job.state == JobState.REJECTED:
        messages.success(request, f"Job {job.pk} rejected; the publisher sees your reason.")
    else:
        messages.success(request, f"Job {job.pk} approved: its package is being published.")
    return redirect(back)
