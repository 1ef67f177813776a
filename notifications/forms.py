import re

from django import forms
from django.core.validators import validate_email

from core.models import AlertSeverity
from notifications.models import Channel, ChannelKind
from webhooks import targets

_SNS_ARN = re.compile(r"^arn:aws[\w-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$")
SOURCES = ["security", "backups", "webhooks", "pipeline", "workers", "health", "notifications"]


class ChannelForm(forms.ModelForm):
    class Meta:
        model = Channel
        fields = ["team", "name", "kind", "target", "secret"]
        help_texts = {
            "target": "Email: addresses, comma-separated. Slack / webhook: the URL. SNS: the topic ARN."
        }

    def clean(self):
        data = super().clean()
        kind, target = data.get("kind"), (data.get("target") or "").strip()
        if not kind or not target:
            return data
        if kind == ChannelKind.EMAIL:
            for address in [a.strip() for a in target.split(",") if a.strip()]:
                try:
                    validate_email(address)
                except forms.ValidationError:
                    self.add_error("target", f"'{address}' is not an email address.")
        elif kind == ChannelKind.SNS:
            if not _SNS_ARN.match(target):
                self.add_error(
                    "target", "An SNS topic ARN looks like arn:aws:sns:us-east-1:123456789012:ops-alerts."
                )
        else:
            try:
                targets.url_check(target)
            except targets.TargetRefused as exc:
                self.add_error("target", f"This URL cannot receive notifications: {exc}")
        data["target"] = target
        return data


class RouteForm(forms.Form):
    team = forms.SlugField(max_length=64)
    sources = forms.MultipleChoiceField(
        choices=[(s, s) for s in SOURCES], required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every source.",
    )  # fmt: skip
    min_severity = forms.ChoiceField(choices=AlertSeverity.choices, initial=AlertSeverity.WARNING)
