"""The forms of the webhook pages: parsing and the checks a person gets told about at once.
What the choices mean is in webhooks.services."""

from django import forms

from webhooks import event_types, targets
from webhooks.services import ROTATION_OVERLAPS


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="Endpoint URL",
        max_length=2000,
        help_text="Where Reelflow POSTs events: an http:// or https:// URL your server answers with 2xx.",
        widget=forms.URLInput(
            attrs={"placeholder": "https://example.com/reelflow/webhooks", "autocomplete": "off"}
        ),
    )
    description = forms.CharField(
        required=False, max_length=200, help_text="For you: what receives these events."
    )
    event_types = forms.MultipleChoiceField(
        label="Events to send",
        choices=event_types.CHOICES,
        widget=forms.CheckboxSelectMultiple,
        initial=event_types.DEFAULT,
        error_messages={"required": "Choose at least one kind of event to send."},
        help_text="Job, rendition and asset events are the usual choice; unit events are many (one per chunk).",
    )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        try:
            targets.url_check(url)
        except targets.TargetRefused as exc:
            raise forms.ValidationError(str(exc)) from exc
        return url


class RotateForm(forms.Form):
    overlap = forms.TypedChoiceField(
        label="The old secret stops working",
        coerce=int,
        choices=list(ROTATION_OVERLAPS.items()),
        initial=24 * 3600,
        widget=forms.RadioSelect,
        help_text="Keep it for 24 hours to update your receiver without missing events; "
        "stop it at once if it leaked.",
    )


class DeliveryFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "Any state")])

    def __init__(self, *args, **kwargs) -> None:
        from webhooks.models import DeliveryState

        super().__init__(*args, **kwargs)
        self.fields["state"].choices = [("", "Any state"), *DeliveryState.choices]

    def state_value(self) -> str:
        return self.cleaned_data.get("state", "") if self.is_valid() else ""
