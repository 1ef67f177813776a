"""EC2 through boto3 against moto_server: a compliant and a non-compliant fleet, the automatic
responses and their undo, acknowledgements that expire or are reopened by a config change."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import Alert, AlertState, Event
from security.models import (
    Instance,
    InstanceState,
    ResponseAction,
    ResponseKind,
    ResponseState,
    Violation,
    ViolationState,
)
from security.policy import Trigger
from security.services.evaluation import instance_evaluate, security_sweep
from security.services.inventory import ec2_instances_refresh, ec2_inventory_sweep
from security.services.responses import ResponseError, response_undo
from security.services.violations import ViolationError, violation_acknowledge, violations_expire

pytestmark = pytest.mark.django_db


def _evaluate(cloud, instance_id: str, trigger=Trigger.SWEEP):
    (instance,) = ec2_instances_refresh(region=cloud.region, instance_ids=[instance_id])
    return instance, instance_evaluate(instance_id=instance.pk, trigger=trigger)


def test_compliant_fleet_has_no_violations(cloud, redis_conn):
    ids = [cloud.launch(worker=i == 0) for i in range(3)]
    result = security_sweep()
    assert result["evaluated"] == 3 and result["opened"] == 0
    assert set(Instance.objects.values_list("external_id", flat=True)) == set(ids)
    assert not Violation.objects.exists() and not Alert.objects.exists()
    assert all(cloud.describe(i)["State"]["Name"] in ("pending", "running") for i in ids)


def test_non_compliant_fleet_opens_violations_and_responds(cloud, redis_conn):
    imdsv1 = cloud.launch(http_tokens="optional")
    open_ssh = cloud.launch(open_ssh=True)
    unapproved = cloud.launch(image_id="ami-0badc0ffee0000001", encrypted=False, tags={})
    public_worker = cloud.launch(worker=True, public_ip=True, instance_type="p3.8xlarge")
    security_sweep()

    def fired(instance_id):
        return set(
            Violation.objects.filter(instance__external_id=instance_id).values_list("policy", flat=True)
        )

    assert fired(imdsv1) == {"ec2-imdsv2-required"}
    assert fired(open_ssh) == {"ec2-no-world-ssh-rdp"}
    assert fired(unapproved) == {"ec2-approved-amis", "ec2-ebs-encrypted", "ec2-required-tags"}
    assert fired(public_worker) == {"ec2-worker-no-public-ip", "ec2-instance-types-allowed"}

    # Tag (IMDSv1), quarantine (open SSH), stop (unapproved image, public worker), in the cloud itself.
    tags = {t["Key"]: t["Value"] for t in cloud.describe(imdsv1)["Tags"]}
    assert tags["reelflow-compliance"] == "imdsv1-enabled"
    groups = [g["GroupName"] for g in cloud.describe(open_ssh)["SecurityGroups"]]
    assert groups == ["reelflow-quarantine"]
    assert cloud.describe(unapproved)["State"]["Name"] == "stopped"
    assert cloud.describe(public_worker)["State"]["Name"] == "stopped"

    # Each violation raised one security alert that records what was done and how to undo it.
    violation = Violation.objects.get(instance__external_id=open_ssh)
    alert = violation.alert
    assert alert.source == "security" and alert.severity == "critical" and alert.state == AlertState.OPEN
    (entry,) = alert.actions
    assert entry["action"] == "quarantine" and "security groups" in entry["undo"] and entry["response_id"]
    evidence = violation.evidence
    offending = [c for c in evidence["checks"] if c["offending"]]
    assert offending and offending[0]["items"][0]["FromPort"] == 22
    assert "0.0.0.0/0" in evidence["compliant"]


def test_undo_restores_groups_tags_and_starts_stopped_instance(cloud, redis_conn, reviewer):
    open_ssh = cloud.launch(open_ssh=True)
    # moto lists launch-time groups on the network interface only.
    original = sorted(g["GroupId"] for g in cloud.describe(open_ssh)["NetworkInterfaces"][0]["Groups"])
    assert len(original) == 2
    imdsv1 = cloud.launch(http_tokens="optional")
    unapproved = cloud.launch(image_id="ami-0badc0ffee0000001")
    security_sweep()

    until = timezone.now() + timedelta(days=3)
    first = ResponseAction.objects.filter(state=ResponseState.DONE).first()
    with pytest.raises(ResponseError, match="justification"):
        response_undo(response=first, actor=reviewer)
    for response in ResponseAction.objects.filter(state=ResponseState.DONE):
        response_undo(response=response, actor=reviewer, justification="known exception", expires_at=until)

    assert sorted(g["GroupId"] for g in cloud.describe(open_ssh)["SecurityGroups"]) == original
    assert "reelflow-compliance" not in {t["Key"] for t in cloud.describe(imdsv1)["Tags"]}
    assert cloud.describe(unapproved)["State"]["Name"] in ("pending", "running")
    undone = ResponseAction.objects.get(kind=ResponseKind.STOP)
    assert undone.state == ResponseState.UNDONE and undone.undone_by == reviewer
    assert Event.objects.filter(type="security.response_undone", actor=reviewer).count() == 3
    with pytest.raises(ResponseError):
        response_undo(response=undone, actor=reviewer, justification="again", expires_at=until)
    # Undoing accepted the violations; the next sweep leaves them (and the instances) alone.
    assert set(Violation.objects.values_list("state", flat=True)) == {ViolationState.ACKNOWLEDGED}
    security_sweep()
    assert set(Violation.objects.values_list("state", flat=True)) == {ViolationState.ACKNOWLEDGED}
    assert ResponseAction.objects.filter(state=ResponseState.DONE).count() == 0
    assert cloud.describe(unapproved)["State"]["Name"] in ("pending", "running")


def test_terminate_is_off_unless_enabled(cloud, redis_conn, settings, tmp_path):
    pack = tmp_path / "p.yml"
    pack.write_text(
        "policies:\n  - {name: kill-big, resource: ec2, filters: [{InstanceType: p3.8xlarge}], actions: [terminate]}\n"
    )
    settings.SECURITY_POLICY_PATHS = [str(pack)]
    big = cloud.launch(instance_type="p3.8xlarge")
    security_sweep()
    assert ResponseAction.objects.get().state == ResponseState.SKIPPED
    assert cloud.describe(big)["State"]["Name"] != "terminated"


def test_acknowledgement_expires_and_reopens(cloud, redis_conn, reviewer):
    instance_id = cloud.launch(http_tokens="optional")
    _evaluate(cloud, instance_id)
    violation = Violation.objects.get()
    first_alert = violation.alert
    with pytest.raises(ViolationError):
        violation_acknowledge(
            violation=violation,
            reviewer=reviewer,
            justification="  ",
            expires_at=timezone.now() + timedelta(days=1),
        )
    violation_acknowledge(
        violation=violation, reviewer=reviewer, justification="legacy AMI, replaced next sprint",
        expires_at=timezone.now() + timedelta(hours=1),
    )  # fmt: skip
    first_alert.refresh_from_db()
    assert first_alert.state == AlertState.ACKNOWLEDGED

    # Still acknowledged while it lasts, even though the rule keeps firing.
    _evaluate(cloud, instance_id)
    violation.refresh_from_db()
    assert violation.state == ViolationState.ACKNOWLEDGED

    assert violations_expire(now=timezone.now() + timedelta(hours=2)) == [violation.pk]
    violation.refresh_from_db()
    first_alert.refresh_from_db()
    assert violation.state == ViolationState.OPEN and violation.justification == ""
    assert first_alert.state == AlertState.RESOLVED
    assert violation.alert_id != first_alert.pk and violation.alert.state == AlertState.OPEN
    assert "acknowledgement expired" in violation.alert.title
    trail = list(
        Event.objects.filter(subject_type="security.violation", subject_id=str(violation.pk))
        .order_by("id")
        .values_list("type", flat=True)
    )
    assert trail == [
        "violation.opened",
        "security.response_done",
        "violation.acknowledged",
        "violation.reopened",
    ]


def test_configuration_change_reopens_acknowledgement(cloud, redis_conn, reviewer):
    instance_id = cloud.launch(tags={"owner": "a", "service": "b"})  # environment missing
    _evaluate(cloud, instance_id)
    violation = Violation.objects.get(policy="ec2-required-tags")
    violation_acknowledge(
        violation=violation,
        reviewer=reviewer,
        justification="tagging rollout",
        expires_at=timezone.now() + timedelta(days=30),
    )

    _evaluate(cloud, instance_id)  # same configuration: stays acknowledged
    violation.refresh_from_db()
    assert violation.state == ViolationState.ACKNOWLEDGED

    cloud.ec2.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": "t3.medium"})
    _evaluate(cloud, instance_id)
    violation.refresh_from_db()
    assert violation.state == ViolationState.OPEN
    reopened = Event.objects.filter(type="violation.reopened", subject_id=str(violation.pk)).get()
    assert "configuration changed" in reopened.payload["reason"]


def test_fixed_configuration_resolves_and_terminated_instance_closes(cloud, redis_conn):
    instance_id = cloud.launch(tags={"owner": "a"})
    _evaluate(cloud, instance_id)
    violation = Violation.objects.get()
    cloud.ec2.create_tags(
        Resources=[instance_id], Tags=[{"Key": "service", "Value": "b"}, {"Key": "environment", "Value": "c"}]
    )
    _evaluate(cloud, instance_id)
    violation.refresh_from_db()
    assert violation.state == ViolationState.RESOLVED and violation.alert.state == AlertState.RESOLVED

    # Fires again -> the same violation reopens, with a new alert.
    cloud.ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "service"}])
    _evaluate(cloud, instance_id)
    violation.refresh_from_db()
    assert violation.state == ViolationState.OPEN and Violation.objects.count() == 1

    cloud.ec2.terminate_instances(InstanceIds=[instance_id])
    ec2_inventory_sweep(region=cloud.region)
    instance_evaluate(instance_id=Instance.objects.get().pk)
    violation.refresh_from_db()
    assert violation.state == ViolationState.RESOLVED
    assert Instance.objects.get().state == InstanceState.TERMINATED


def test_demo_fleet_of_make_run_is_half_compliant(cloud, redis_conn):
    from security import simcloud

    seeded = simcloud.demo_fleet_seed(cloud.ec2)
    security_sweep()
    flagged = set(Violation.objects.values_list("instance__external_id", flat=True))
    assert flagged == set(seeded["non_compliant"])
