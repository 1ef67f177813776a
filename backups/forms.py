"""Forms of the backups pages: they parse and validate input, nothing else."""

from django import forms
from django.utils import timezone

from backups.models import BackupPolicy, RestoreScope, RunVerify, StorageEndpoint


class RunStartForm(forms.Form):
    policy = forms.ModelChoiceField(queryset=BackupPolicy.objects.filter(enabled=True))
    verify = forms.ChoiceField(choices=RunVerify.choices, initial=RunVerify.PLAN, required=False)


class RestoreForm(forms.Form):
    DESTINATIONS = [("original", "Its original place (overwrites what is there)"), ("other", "Another bucket / prefix")]

    policy = forms.ModelChoiceField(queryset=BackupPolicy.objects.order_by("name"), empty_label=None)
    scope = forms.ChoiceField(choices=RestoreScope.choices, widget=forms.RadioSelect, initial=RestoreScope.OBJECT)
    selector = forms.CharField(
        label="Key, prefix or asset number", max_length=1024, required=False,
        help_text="e.g. uploads/alice/clip.mp4 · assets/42/ · 42",
    )
    as_of = forms.DateTimeField(
        label="As of (UTC, optional)", required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        help_text="Restore the versions that were current then. Empty: the newest backed-up version.",
    )
    destination = forms.ChoiceField(choices=DESTINATIONS, widget=forms.RadioSelect, initial="original")
    target_endpoint = forms.ModelChoiceField(
        queryset=StorageEndpoint.objects.order_by("name"), required=False, empty_label="The object's own endpoint"
    )
    target_bucket = forms.CharField(max_length=255, required=False)
    target_prefix = forms.CharField(
        max_length=512, required=False, help_text="Put before each key, e.g. restored/2026-01-31/"
    )
    confirm_overwrite = forms.BooleanField(
        required=False, label="I understand that restoring to the original place replaces the objects there"
    )

    def clean_as_of(self):
        value = self.cleaned_data.get("as_of")
        if value is not None and value > timezone.now():
            raise forms.ValidationError("Pick a moment in the past.")
        return value

    def clean(self):
        data = super().clean()
        scope, selector = data.get("scope"), (data.get("selector") or "").strip()
        if scope in (RestoreScope.OBJECT, RestoreScope.ASSET) and not selector:
            self.add_error("selector", "Say which object or asset to restore.")
        if scope == RestoreScope.ASSET and selector and not selector.isdigit():
            self.add_error("selector", "An asset is named by its number, e.g. 42.")
        if data.get("destination") == "other":
            if not (data.get("target_bucket") or "").strip():
                self.add_error("target_bucket", "Name the bucket to restore into.")
        else:
            if not data.get("confirm_overwrite"):
                self.add_error("confirm_overwrite", "Confirm that the original objects may be replaced.")
            data["target_bucket"] = data["target_prefix"] = ""
            data["target_endpoint"] = None
        data["selector"] = selector
        return data
