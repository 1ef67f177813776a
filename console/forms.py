"""Filters of the console's lists and the actions operators post. Parsing only: what a filter
means for the database is in console.selectors, what an action does is in console.services."""

from __future__ import annotations

from django import forms

from console.selectors import ACTIVE, EventFilters, JobFilters, JobSort
from console.services import JobAction
from pipeline.models import JobState

MAX_BULK_JOBS = 500


class JobFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search",
                        help_text="Job or asset number (#123), title words, or a publisher")
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), (ACTIVE, "Active (not finished)"),
                                                       *JobState.choices])
    publisher = forms.CharField(required=False, max_length=150)
    profile = forms.ChoiceField(required=False, choices=[("", "Any profile")])
    created_from = forms.DateField(required=False, label="Created from", widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, label="Created to", widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(required=False, choices=JobSort.choices)

    def __init__(self, *args, profiles: list[tuple[str, str]] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["profile"].choices = [("", "Any profile"), *profiles]

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The end date is before the start date.")
        return data

    def filters(self) -> JobFilters:
        """The valid fields as filters; an invalid field is left out (and shown as an error)."""
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return JobFilters(
            q=(data.get("q") or "").strip(),
            state=data.get("state") or "",
            publisher=(data.get("publisher") or "").strip(),
            profile=data.get("profile") or "",
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
            sort=data.get("sort") or JobSort.NEWEST,
        )


# Short names an operator may type for common subjects.
SUBJECT_ALIASES = {
    "job": "pipeline.encodejob",
    "asset": "pipeline.asset",
    "alert": "core.alert",
    "violation": "security.violation",
    "run": "backups.backuprun",
    "restore": "backups.restore",
}


class EventFilterForm(forms.Form):
    type = forms.CharField(required=False, max_length=64, help_text='Exact type, or a prefix ending in "." such as job.')
    subject = forms.CharField(required=False, max_length=140, help_text="type:id, e.g. job:42 or pipeline.asset:7")
    actor = forms.CharField(required=False, max_length=128, help_text="User name, or system, scheduler, worker:…")
    created_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean_subject(self) -> tuple[str, str] | None:
        value = (self.cleaned_data.get("subject") or "").strip()
        if not value:
            return None
        subject_type, sep, subject_id = value.rpartition(":")
        if not sep or not subject_type or not subject_id:
            raise forms.ValidationError("Give the subject as type:id, e.g. job:42.")
        return SUBJECT_ALIASES.get(subject_type.lower(), subject_type.lower()), subject_id

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The end date is before the start date.")
        return data

    def filters(self) -> EventFilters:
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        subject_type, subject_id = data.get("subject") or ("", "")
        return EventFilters(
            type=(data.get("type") or "").strip(),
            subject_type=subject_type,
            subject_id=subject_id,
            actor=(data.get("actor") or "").strip(),
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
        )


class JobActionForm(forms.Form):
    action = forms.ChoiceField(choices=JobAction.choices)


class BulkActionForm(forms.Form):
    action = forms.ChoiceField(choices=JobAction.choices)
    job = forms.TypedMultipleChoiceField(coerce=int, error_messages={"required": "Select at least one job."})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Any job id is a valid choice here; whether the job exists is the service's answer.
        self.fields["job"].valid_value = lambda value: str(value).isdigit()

    def clean_job(self) -> list[int]:
        ids = list(dict.fromkeys(self.cleaned_data["job"]))
        if len(ids) > MAX_BULK_JOBS:
            raise forms.ValidationError(f"Select at most {MAX_BULK_JOBS} jobs at once.")
        return ids


class RequeueForm(forms.Form):
    queue = forms.CharField(max_length=64)
    rq_id = forms.CharField(max_length=128)


class ChartWindowForm(forms.Form):
    hours = forms.TypedChoiceField(required=False, coerce=int, empty_value=3,
                                   choices=[(1, "1 hour"), (3, "3 hours"), (6, "6 hours"), (24, "24 hours")])
