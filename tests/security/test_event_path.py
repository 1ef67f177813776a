"""The EC2 event path closed against bad and forged events: each instance handled on its own,
400 for what a sender got wrong (never 500), unprocessable SQS messages to the dead-letter
record (never redelivered forever), forged launches alerted instead of acted on, and the
allowlist matched by ARN parts."""

import json
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.urls import reverse

from core.models import Alert
from security import aws
from security.models import DeadLetter, Instance, ResponseAction, ResponseKind
from security.principals import Principal, arn_matches, principal_allowed, principal_inconsistency
from tests.security.conftest import EVENTS_TOKEN, run_instances_event, state_change_event

pytestmark = pytest.mark.django_db

INTRUDER = "arn:aws:iam::123456789012:user/mallory"
UNKNOWN_ID = "i-0123456789abcdef0"


def post(client, body, *, raw: str | None = None):
    return client.post(
        reverse("security:ec2_events"), data=raw if raw is not None else json.dumps(body),
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {EVENTS_TOKEN}",
    )  # fmt: skip


@pytest.fixture
def allowlist(settings):
    settings.SECURITY_LAUNCH_ALLOWLIST = ["arn:aws:iam::123456789012:role/reelflow-*"]


def test_launch_naming_a_real_and_an_unknown_instance_stops_the_real_one(
    client, cloud, redis_conn, allowlist
):
    real = cloud.launch()
    answer = post(client, run_instances_event([real, UNKNOWN_ID], INTRUDER))
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["stopped"] == [real] and body["unknown"] == [UNKNOWN_ID]
    assert cloud.describe(real)["State"]["Name"] == "stopped"
    assert Alert.objects.filter(dedup_key=f"security:launch:{real}", severity="critical").exists()
    # The unknown id is not acted on but a person hears of it: the event named a phantom.
    distrust = Alert.objects.get(dedup_key="security:launch-event:ct-1")
    assert UNKNOWN_ID in distrust.evidence["reasons"] and real not in distrust.evidence["reasons"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (run_instances_event("i-nothex", INTRUDER), "not an EC2 instance id"),
        (run_instances_event([12345], INTRUDER), "not an EC2 instance id"),
        ({**state_change_event("i-0123456789abcdef0"), "region": "ap-south-2"}, "region 'ap-south-2' is not enabled"),
        ({**state_change_event("i-0123456789abcdef0"), "detail": "running"}, "detail must be an object"),
        ({**state_change_event("i-0123456789abcdef0"), "detail": {"instance-id": [1], "state": "running"}}, "not an EC2 instance id"),
        ({**state_change_event("i-0123456789abcdef0"), "detail": {"instance-id": UNKNOWN_ID, "state": "melted"}}, "not an EC2 state"),
        ({"Records": [{"eventName": "RunInstances", "userIdentity": "root", "responseElements": {"instancesSet": {"items": [{"instanceId": UNKNOWN_ID}]}}}]}, "userIdentity must be an object"),
        ({"Records": "many"}, "Records must be a list"),
        ([[state_change_event(UNKNOWN_ID)]], "an event must be an object"),
    ],
)  # fmt: skip
def test_what_a_sender_gets_wrong_is_400_with_the_reason(client, cloud, body, says):
    answer = post(client, body)
    assert answer.status_code == 400 and says in answer.json()["error"], answer.content


def test_deeply_nested_json_is_400(client, cloud):
    answer = post(client, None, raw="[" * 100_000 + "]" * 100_000)
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]


def test_state_change_of_an_unknown_instance_is_reported_not_an_error(client, cloud, redis_conn):
    real = cloud.launch()
    answer = post(client, [state_change_event(UNKNOWN_ID), state_change_event(real, event_id="ev-2")])
    assert answer.status_code == 200
    assert answer.json()["unknown"] == [UNKNOWN_ID] and answer.json()["instances"] == [real]


def test_forged_launch_of_a_long_running_instance_alerts_instead_of_stopping(
    client, cloud, redis_conn, allowlist
):
    long_running = cloud.launch()
    two_days_later = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    answer = post(client, run_instances_event(long_running, INTRUDER, event_time=two_days_later))
    assert answer.status_code == 200 and answer.json()["stopped"] == []
    assert answer.json()["distrusted"] == ["ct-1"]
    assert cloud.describe(long_running)["State"]["Name"] == "running"
    alert = Alert.objects.get(dedup_key="security:launch-event:ct-1")
    assert alert.severity == "critical" and "launched at" in alert.evidence["reasons"][long_running]
    assert not ResponseAction.objects.filter(kind=ResponseKind.STOP).exists()
    assert Instance.objects.get(external_id=long_running).launched_by == ""


def test_launch_claimed_by_another_account_is_not_acted_on(client, cloud, redis_conn, allowlist):
    instance_id = cloud.launch()
    stranger = "arn:aws:iam::999999999999:user/mallory"
    event = run_instances_event(instance_id, stranger)
    event["detail"]["userIdentity"]["accountId"] = "999999999999"
    answer = post(client, event)
    assert answer.json()["stopped"] == [] and cloud.describe(instance_id)["State"]["Name"] == "running"
    reasons = Alert.objects.get(dedup_key="security:launch-event:ct-1").evidence["reasons"]
    assert "belongs to account 123456789012" in reasons[instance_id]


def test_forged_session_issuer_does_not_pass_the_allowlist(client, cloud, redis_conn, allowlist):
    instance_id = cloud.launch()
    event = run_instances_event(instance_id, INTRUDER, wrapped=False)
    # An IAM user's call with an allowed role pasted in as its "issuer".
    event["userIdentity"]["sessionContext"] = {
        "sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/reelflow-autoscaler", "type": "Role"}
    }
    answer = post(client, {"Records": [event]})
    assert answer.json()["stopped"] == [] and answer.json()["distrusted"] == ["ct-1"]
    assert cloud.describe(instance_id)["State"]["Name"] == "running"


def test_allowlist_glob_does_not_cross_an_iam_path(client, cloud, redis_conn, allowlist):
    instance_id = cloud.launch()
    answer = post(
        client, run_instances_event(instance_id, "arn:aws:iam::123456789012:role/reelflow-team/attacker")
    )
    assert answer.json()["stopped"] == [instance_id]


def test_arn_parts_matching():
    pattern = "arn:aws:iam::123456789012:role/reelflow-*"
    assert arn_matches(pattern=pattern, candidate="arn:aws:iam::123456789012:role/reelflow-autoscaler")
    assert not arn_matches(pattern=pattern, candidate="arn:aws:iam::123456789012:role/reelflow-team/attacker")
    assert not arn_matches(pattern=pattern, candidate="arn:aws:iam::123456789013:role/reelflow-x")
    assert not arn_matches(pattern=pattern, candidate="arn:aws:iam::123456789012:user/reelflow-x")
    assert arn_matches(pattern="arn:aws:iam::*:role/ops/*", candidate="arn:aws:iam::1:role/ops/deployer")
    assert not arn_matches(pattern="arn:aws:iam::*:role/ops/*", candidate="arn:aws:iam::1:role/ops/a/b")
    assert not arn_matches(pattern="reelflow-*", candidate="reelflow-x"), "a non-ARN pattern is exact"
    session = Principal(
        arn="arn:aws:sts::123456789012:assumed-role/reelflow-autoscaler/i-abc",
        issuer="arn:aws:iam::123456789012:role/reelflow-autoscaler", kind="AssumedRole",
    )  # fmt: skip
    assert principal_inconsistency(session) == "" and principal_allowed(principal=session, patterns=[pattern])
    other_role = Principal(arn="arn:aws:sts::123456789012:assumed-role/evil/s", issuer=session.issuer)
    assert "not a session of the role" in principal_inconsistency(other_role)
    assert not principal_allowed(principal=other_role, patterns=[pattern])


def _sqs(cloud):
    import boto3

    sqs = boto3.client(
        "sqs", endpoint_url=cloud.endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )  # fmt: skip
    return sqs, sqs.create_queue(QueueName="reelflow-security-events", Attributes={"VisibilityTimeout": "0"})[
        "QueueUrl"
    ]


def test_unprocessable_sqs_messages_go_to_the_dead_letter_record(cloud, redis_conn, allowlist):
    sqs, url = _sqs(cloud)
    real = cloud.launch()
    sqs.send_message(QueueUrl=url, MessageBody="not json")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(run_instances_event("i-nothex", INTRUDER)))
    sqs.send_message(QueueUrl=url, MessageBody="[" * 50_000 + "]" * 50_000)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(run_instances_event([real, UNKNOWN_ID], INTRUDER)))
    for _ in range(3):
        call_command("security_events", "--queue-url", url, "--once", "--wait", "1")
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None, (
        "nothing left to loop"
    )
    assert DeadLetter.objects.count() == 3
    errors = " | ".join(DeadLetter.objects.values_list("error", flat=True))
    assert "not an EC2 instance id" in errors and "nested too deeply" in errors
    alert = Alert.objects.get(dedup_key="security:dead-letter:sqs")
    assert alert.occurrences == 3
    assert cloud.describe(real)["State"]["Name"] == "stopped"


def test_a_message_failing_in_the_cloud_is_retried_then_dead_lettered(cloud, redis_conn, settings):
    settings.SECURITY_SQS_MAX_RECEIVES = 3
    sqs, url = _sqs(cloud)
    instance_id = cloud.launch()
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(state_change_event(instance_id)))
    outage = aws.CloudError("describe_instances: cannot reach AWS", transient=True)
    with mock.patch.object(aws, "_instances_read", side_effect=outage):
        for receive in range(1, 4):
            call_command("security_events", "--queue-url", url, "--once", "--wait", "1")
            assert DeadLetter.objects.count() == (1 if receive == 3 else 0), receive
    letter = DeadLetter.objects.get()
    assert letter.receive_count == 3 and "cannot reach AWS" in letter.error
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None


def test_a_defect_in_the_handler_dead_letters_the_message(cloud, redis_conn):
    sqs, url = _sqs(cloud)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(state_change_event(cloud.launch())))
    with mock.patch("security.services.ec2_events._state_handle", side_effect=KeyError("boom")):
        call_command("security_events", "--queue-url", url, "--once", "--wait", "1")
    assert "KeyError" in DeadLetter.objects.get().error
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None


def test_make_run_sets_the_events_token_and_the_documented_post_works(
    client, cloud, redis_conn, tmp_path, monkeypatch, settings
):
    from devservices import stack

    monkeypatch.setenv("REELFLOW_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("SECURITY_EVENTS_TOKEN", raising=False)
    env, _ = stack.stack_env(start_local=True)
    again, _ = stack.stack_env(start_local=True)
    token = env["SECURITY_EVENTS_TOKEN"]
    assert len(token) >= 40 and again["SECURITY_EVENTS_TOKEN"] == token, "generated once, kept"
    assert (tmp_path / "security-events-token").read_text() == token
    settings.SECURITY_EVENTS_TOKEN = token
    answer = client.post(
        reverse("security:ec2_events"), data=json.dumps(state_change_event(cloud.launch())),
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    assert answer.status_code == 200
