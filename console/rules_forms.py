"""Forms for publish rules and reviews: parsing and validation only (pipeline.rules says
what a rule needs; pipeline.services decides a review)."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from pipeline.models import Profile, Review, Rule, RuleKind, RuleSet
from pipeline.rules import RuleConfigError, rule_validate


class RuleSetForm(forms.ModelForm):
    class Meta:
        model = RuleSet
        fields = ["name", "description", "is_active", "is_default", "profiles", "publishers"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "profiles": forms.CheckboxSelectMultiple,
            "publishers": forms.SelectMultiple(attrs={"size": 6}),
        }
        labels = {"is_active": "Active", "is_default": "Applies to every job"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["profiles"].queryset = Profile.objects.order_by("slug")
        self.fields["publishers"].queryset = (
            get_user_model().objects.filter(groups__permissions__codename="access_studio").distinct().order_by("username")
        )
        self.fields["publishers"].help_text = "Jobs of these publishers must pass this set too."


class RuleForm(forms.ModelForm):
    class Meta:
        model = Rule
        fields = ["kind", "enabled", "metric", "statistic", "threshold", "min_height", "fallback_metric",
                  "fallback_threshold", "tolerance"]
        labels = {"min_height": "Only rungs at least this tall (px)", "tolerance": "Tolerance"}
        help_texts = {
            "tolerance": "Duration rule: frames (default 1). Bitrate rule: percent over the cap (default 5).",
            "fallback_metric": "Used where the metric could not be measured (e.g. VMAF without libvmaf).",
        }

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        candidate = Rule(**{k: v for k, v in data.items() if k in {f.name for f in Rule._meta.fields}})
        try:
            rule_validate(candidate)
        except RuleConfigError as exc:
            raise forms.ValidationError(str(exc)) from exc
        if data.get("kind") != RuleKind.QUALITY_MIN:
            # Fields that only a quality rule reads are cleared, so the page never shows a
            # threshold that does nothing.
            for name in ("metric", "threshold", "min_height", "fallback_metric", "fallback_threshold"):
                data[name] = None if name in ("threshold", "min_height", "fallback_threshold") else ""
        return data


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=Review.Decision.choices)
    reason = forms.CharField(
        min_length=3, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Give a reason: it is recorded with the job.",
                        "min_length": "Give a reason of a few words: it is recorded with the job."},
    )


class VerifyForm(forms.Form):
    verified = forms.TypedChoiceField(choices=[("1", "verify"), ("0", "unverify")], coerce=lambda v: v == "1")
