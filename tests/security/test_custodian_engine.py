"""Custodian's engine inside Reelflow: c7n's filters on events and sweeps (with the violation
lifecycle), c7n's actions where Reelflow does not honour every parameter, and modes that run on
the states they name."""

import json

import pytest
from django.urls import reverse

from security.models import ResponseAction, ResponseKind, ResponseState, Violation
from security.policy import policy_set_load
from security.services.evaluation import instance_evaluate
from security.services.inventory import ec2_inventory_sweep
from tests.security.conftest import EVENTS_TOKEN, state_change_event

pytestmark = pytest.mark.django_db

POLICIES = """
policies:
  - name: imds-by-custodian
    resource: ec2
    severity: critical
    filters:
      - MetadataOptions.HttpTokens: optional
      - type: security-group
        key: GroupName
        value: reelflow-private
    actions:
      - type: set-metadata-access
        tokens: required
  - name: hibernate-open-ssh
    resource: ec2
    filters:
      - type: security-group
        key: GroupName
        value: legacy-ssh
    actions:
      - type: stop
        hibernate: true
  - name: watch-stopped
    resource: ec2
    mode: {type: ec2-instance-state, events: [stopped]}
    filters:
      - State.Name: stopped
    actions:
      - {type: tag, key: seen-stopped, value: "yes"}
"""


@pytest.fixture
def custodian_policies(settings, tmp_path):
    path = tmp_path / "custodian.yml"
    path.write_text(POLICIES)
    settings.SECURITY_POLICY_PATHS = [str(path)]
    return policy_set_load([str(path)])


def post(client, body):
    return client.post(
        reverse("security:ec2_events"), data=json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {EVENTS_TOKEN}",
    )  # fmt: skip


def test_engines_are_chosen_per_policy(custodian_policies):
    engines = {p.name: p.engine for p in custodian_policies}
    assert engines == {"imds-by-custodian": "c7n", "hibernate-open-ssh": "c7n", "watch-stopped": "reelflow"}
    actions = {p.name: [(a.type, a.params) for a in p.actions] for p in custodian_policies}
    assert actions["hibernate-open-ssh"] == [("custodian", {"action": {"type": "stop", "hibernate": True}})]


def test_the_sweep_runs_custodian_filters_and_actions_in_the_cloud(cloud, redis_conn, custodian_policies):
    imdsv1 = cloud.launch(http_tokens="optional")
    open_ssh = cloud.launch(open_ssh=True, hibernation=True)
    compliant = cloud.launch()
    for instance in ec2_inventory_sweep(region=cloud.region):
        instance_evaluate(instance_id=instance.pk, policies=custodian_policies)
    fired = set(Violation.objects.values_list("policy", "instance__external_id"))
    assert ("imds-by-custodian", imdsv1) in fired and ("hibernate-open-ssh", open_ssh) in fired
    assert not Violation.objects.filter(instance__external_id=compliant).exists()
    # c7n's own actions ran against EC2, recorded as Custodian actions with no automatic undo.
    assert cloud.describe(imdsv1)["MetadataOptions"]["HttpTokens"] == "required"
    assert cloud.describe(open_ssh)["State"]["Name"] == "stopped"
    response = ResponseAction.objects.get(violation__policy="hibernate-open-ssh")
    assert response.kind == ResponseKind.CUSTODIAN and response.state == ResponseState.DONE
    assert "hibernate=True" in response.detail and not response.undoable
    evidence = Violation.objects.get(policy="imds-by-custodian").evidence
    assert evidence["engine"] == "c7n" and "security-group" in evidence["checks"][0]["value"]


def test_a_state_mode_runs_on_its_states_only(client, cloud, redis_conn, custodian_policies):
    instance_id = cloud.launch()
    answer = post(client, state_change_event(instance_id, "running"))
    assert answer.status_code == 200 and not Violation.objects.filter(policy="watch-stopped").exists()
    cloud.ec2.stop_instances(InstanceIds=[instance_id])
    answer = post(client, state_change_event(instance_id, "stopped", event_id="ev-stop"))
    assert answer.status_code == 200 and answer.json()["ignored"] == 0
    assert Violation.objects.get(policy="watch-stopped").instance.external_id == instance_id
    tags = {t["Key"]: t["Value"] for t in cloud.describe(instance_id)["Tags"]}
    assert tags["seen-stopped"] == "yes"


def test_the_rules_page_names_each_policys_engine_and_custodians_actions(
    client, reviewer, custodian_policies
):
    client.force_login(reviewer)
    page = client.get(reverse("security:policies")).content.decode()
    assert "engine: c7n" in page and "engine: reelflow" in page
    assert "set-metadata-access (c7n)" in page and "stop (c7n)" in page


NOTIFY = """
policies:
  - name: open-ssh-notify
    resource: ec2
    severity: high
    filters:
      - type: security-group
        key: GroupName
        value: legacy-ssh
    actions:
      - type: notify
        to: [secops, media-ops/pager, sec@example.com, resource-owner]
        subject: SSH open to the world
        transport: {type: sqs, queue: "https://sqs.us-east-1.amazonaws.com/123456789012/c7n-mailer"}
"""


def test_notify_reaches_the_teams_and_channels_it_names_through_notifications(cloud, redis_conn, settings, tmp_path):
    from notifications.models import Channel, ChannelKind, Pending
    from security.services.notify import notify_targets

    path = tmp_path / "notify.yml"
    path.write_text(NOTIFY)
    settings.SECURITY_POLICY_PATHS = [str(path)]
    policies = policy_set_load([str(path)])
    # Addresses, owners' tags and URLs are c7n-mailer's (through the transport); team and
    # team/channel names are Reelflow's.
    policy = next(p for p in policies if p.name == "open-ssh-notify")
    assert notify_targets(policy) == (["secops"], ["media-ops/pager"])
    secops = Channel.objects.create(team="secops", name="mail", kind=ChannelKind.EMAIL, target="sec@example.com")
    pager = Channel.objects.create(team="media-ops", name="pager", kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/")
    bystander = Channel.objects.create(team="media-ops", name="chat", kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/")

    open_ssh = cloud.launch(open_ssh=True)
    for instance in ec2_inventory_sweep(region=cloud.region):
        instance_evaluate(instance_id=instance.pk, policies=policies)
    violation = Violation.objects.get(policy="open-ssh-notify", instance__external_id=open_ssh)
    assert violation.alert is not None
    heard = set(Pending.objects.filter(alert=violation.alert).values_list("channel_id", flat=True))
    assert {secops.pk, pager.pk} <= heard and bystander.pk not in heard
