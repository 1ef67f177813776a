"""Security fixtures: a real moto_server (EC2, SQS) on a free 127.0.0.1 port, reset per test."""

import logging
import urllib.request
from types import SimpleNamespace

import pytest

from tests.conftest import free_port

EVENTS_TOKEN = "test-security-events-token"


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def cloud(moto_server, settings):
    """Settings point at an empty simulated cloud, and the inventory is empty too; yields
    clients and a launcher."""
    from security import aws, simcloud
    from security.models import Instance

    # Worker processes of earlier tests register themselves (and commit, outside any test's
    # transaction, where the database lets them write beside it: PostgreSQL): not this fleet.
    Instance.objects.all().delete()

    urllib.request.urlopen(
        urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10
    ).read()
    settings.AWS_REGIONS = ["us-east-1"]
    settings.AWS_ENDPOINT_URL_EC2 = moto_server
    settings.AWS_ENDPOINT_URL_SQS = moto_server
    settings.AWS_ENDPOINT_URL = moto_server  # what else c7n calls (CloudWatch for `singleton`...)
    settings.AWS_ACCESS_KEY_ID = simcloud.SIMULATED_KEY
    settings.AWS_SECRET_ACCESS_KEY = simcloud.SIMULATED_KEY
    settings.SECURITY_EVENTS_TOKEN = EVENTS_TOKEN
    aws.clients_reset()
    client = simcloud.ec2_client(moto_server)

    def launch(**options) -> str:
        return simcloud.instance_launch(client, **options)

    def describe(instance_id: str) -> dict:
        return client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    yield SimpleNamespace(
        endpoint=moto_server, ec2=client, launch=launch, describe=describe, region="us-east-1"
    )
    aws.clients_reset()


@pytest.fixture
def reviewer(make_user):
    from core.roles import Role

    return make_user("reviewer", role=Role.SECURITY)


def state_change_event(instance_id: str, state: str = "running", *, event_id: str = "ev-1") -> dict:
    """An EventBridge EC2 state-change notification, as AWS sends it."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-27T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, "state": state},
    }


def run_instances_event(
    instance_id: str | list, principal: str, *, event_id: str = "ct-1", wrapped: bool = True,
    event_time: str | None = None,
) -> dict:
    """A CloudTrail RunInstances record, inside EventBridge's "AWS API Call via CloudTrail"
    (at the current time unless `event_time` says otherwise: the instances were just launched)."""
    from datetime import UTC, datetime

    ids = instance_id if isinstance(instance_id, list) else [instance_id]
    event_time = event_time or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE",
            "arn": principal,
            "accountId": "123456789012",
            "userName": principal.rsplit("/", 1)[-1],
        },
        "eventTime": event_time,
        "eventSource": "ec2.amazonaws.com",
        "eventName": "RunInstances",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.9",
        "requestParameters": {"instanceType": "t3.small"},
        "responseElements": {"instancesSet": {"items": [{"instanceId": i} for i in ids]}},
        "eventID": event_id,
        "eventType": "AwsApiCall",
    }
    if not wrapped:
        return record
    return {
        "version": "0",
        "id": f"eb-{event_id}",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ec2",
        "account": "123456789012",
        "region": "us-east-1",
        "detail": record,
    }
