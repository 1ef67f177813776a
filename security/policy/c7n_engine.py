"""Policies whose filters Custodian runs: every EC2 policy the compiled evaluator cannot prove
equal to Custodian (filter types other than value, value_types such as age). Same interface as
security.policy.engine.Policy, so evaluations, dry runs and the console treat both alike."""

from __future__ import annotations

import json

from django.conf import settings

from security.custodian import CustodianSelector
from security.policy.loader import PolicySpec


def document_region(resource: dict) -> str:
    zone = (resource.get("Placement") or {}).get("AvailabilityZone") or ""
    return zone[:-1] if zone else (settings.AWS_REGIONS or ["us-east-1"])[0]


class CustodianPolicy:
    engine = "c7n"

    def __init__(self, spec: PolicySpec):
        self.spec = spec
        self.selector = CustodianSelector(spec.raw)
        self.tree = None
        self.uses_tags = True

    name = property(lambda self: self.spec.name)
    resource = property(lambda self: self.spec.resource)
    severity = property(lambda self: self.spec.severity)
    mode = property(lambda self: self.spec.mode)
    actions = property(lambda self: self.spec.actions)
    description = property(lambda self: self.spec.description)

    def test(self, resource: dict, tags: dict | None = None) -> bool:
        """Whether c7n's filters select this document (a CloudError when a filter that reads
        EC2 — security-group, ebs, image — cannot reach it: no verdict rather than a wrong one)."""
        return bool(self.selector.select([resource], region=document_region(resource)))

    matches = test

    def select(self, documents: list[dict], *, region: str) -> list[dict]:
        return self.selector.select(documents, region=region)

    def explain(self, resource: dict) -> dict:
        filters = self.spec.raw.get("filters") or []
        return {
            "policy": self.name,
            "description": self.description,
            "source": f"{self.spec.source}:{self.spec.line}",
            "engine": "c7n",
            "checks": [
                {
                    "items": None,
                    "key": "Custodian's filters",
                    "op": "c7n",
                    "value": json.dumps(filters, default=str)[:2000],
                    "actual": "selected by c7n",
                    "held": True,
                    "offending": True,
                    "compliant": "Custodian's filters of this policy must not select the instance",
                    "line": self.spec.line,
                }
            ],
            "compliant": self.spec.compliant_hint or "Custodian's filters of this policy must not select it",
        }

    def __repr__(self) -> str:
        return f"<CustodianPolicy {self.name} ({self.resource})>"
