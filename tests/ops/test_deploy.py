"""The Grafana dashboard and Prometheus alert rules under deploy/ parse, and every metric they
name is one that /metrics serves (a renamed family breaks this test, not a dashboard)."""

import json
import re
from pathlib import Path

import pytest
import yaml
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from core.roles import Role

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\breelflow_[a-z0-9_]+\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def family_of(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def balanced(expr: str) -> bool:
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1, "{": 1, "}": -1, "[": 1, "]": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


@pytest.fixture
def served(client, make_user, redis_conn) -> set[str]:
    client.force_login(make_user("olga", role=Role.OPERATIONS))
    text = client.get(reverse("ops:metrics")).content.decode()
    return {family.name for family in text_string_to_metric_families(text)}


@pytest.mark.django_db
def test_dashboard_parses_and_names_only_served_metrics(served):
    dashboard = json.loads((DEPLOY / "grafana" / "reelflow-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    named = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert balanced(target["expr"]), target["expr"]
            named |= {family_of(m) for m in METRIC.findall(target["expr"])}
    assert named and named <= served, named - served


@pytest.mark.django_db
def test_alert_rules_parse_and_name_only_served_metrics(served):
    rules = yaml.safe_load((DEPLOY / "prometheus" / "reelflow-alerts.yml").read_text())
    names = []
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"]
            assert balanced(rule["expr"]), rule["expr"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"])
            found = {family_of(m) for m in METRIC.findall(rule["expr"])}
            assert found and found <= served, (rule["alert"], found - served)
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "scrape-example.yml").read_text())
    assert scrape["scrape_configs"][0]["metrics_path"] == "/metrics"
