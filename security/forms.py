from django import forms

from core.models import AlertSeverity
from security.models import ResourceKind, ViolationState
from security.selectors import AGE_CHOICES, STATE_ACTIVE


class AcknowledgeForm(forms.Form):
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)
    expires_at = forms.DateTimeField(
        label="Expires at (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class UndoForm(forms.Form):
    """Undoing a response to a violation also acknowledges the violation, so it asks the same."""

    justification = forms.CharField(required=False, max_length=4000)
    expires_at = forms.DateTimeField(required=False)


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(queryset=None, required=False, empty_label="(nobody)")

    def __init__(self, *args, reviewers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = reviewers


class ResolveForm(forms.Form):
    note = forms.CharField(
        label="How was it resolved?", widget=forms.Textarea(attrs={"rows": 2}), max_length=4000
    )


class ViolationFilterForm(forms.Form):
    severity = forms.ChoiceField(choices=[("", "any severity"), *AlertSeverity.choices], required=False)
    policy = forms.ChoiceField(choices=[], required=False, label="Rule")
    resource = forms.CharField(required=False, label="Resource")
    kind = forms.ChoiceField(choices=[("", "any kind"), *ResourceKind.choices], required=False)
    state = forms.ChoiceField(
        choices=[(STATE_ACTIVE, "open or acknowledged"), *ViolationState.choices, ("all", "all")],
        required=False,
    )
    age = forms.ChoiceField(choices=list(AGE_CHOICES.items()), required=False)

    def __init__(self, *args, policies=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["policy"].choices = [("", "any rule"), *((p, p) for p in policies)]
