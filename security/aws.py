"""The one EC2/SQS wrapper: clients from settings, instance documents, and the response actions.

With AWS_ENDPOINT_URL_EC2 unset the same code talks to real AWS with boto3's credential chain;
`make run` points it at a simulated cloud (moto_server) instead. Failures are raised as
CloudError, marked transient when a retry could help.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, EndpointConnectionError
from django.conf import settings

_TRANSIENT_CODES = {
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "InternalError",
    "Unavailable",
    "ServiceUnavailable",
}
# describe_instances' answer when an id does not exist (or is not an id at all).
_UNKNOWN_INSTANCE_CODES = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}
# Fields that change without anyone changing the instance's configuration.
VOLATILE_FIELDS = ("State", "StateReason", "StateTransitionReason", "LaunchTime", "UsageOperationUpdateTime")


class CloudError(Exception):
    def __init__(self, message: str, *, transient: bool = False, code: str = ""):
        super().__init__(message)
        self.transient, self.code = transient, code


@dataclass(frozen=True)
class _Target:
    service: str
    region: str
    endpoint: str
    key: str
    secret: str


_clients: dict[tuple[int, _Target], Any] = {}
_clients_lock = threading.Lock()


def _client(service: str, region: str):
    """One client per target and process, shared by its threads (boto3 clients are thread-safe).
    Not one per thread: Django runs each sync request in a fresh thread, so the EC2 webhook built
    a client for every event (0.1-0.2 s of CPU, 0.5-0.7 s on a loaded machine) before it could
    stop anything. Built under a lock (building is not thread-safe), keyed by pid (a forked work
    horse never shares its parent's connections), as core.s3 does."""
    endpoint = settings.AWS_ENDPOINT_URL_EC2 if service == "ec2" else settings.AWS_ENDPOINT_URL_SQS
    target = _Target(service, region, endpoint, settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY)
    key = (os.getpid(), target)
    found = _clients.get(key)
    if found is not None:
        return found
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = boto3.session.Session().client(
                service,
                region_name=region,
                endpoint_url=endpoint or None,
                aws_access_key_id=target.key or None,
                aws_secret_access_key=target.secret or None,
                # Responses must land within seconds of an event: fail fast, retry a little.
                config=Config(
                    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10
                ),
            )
    return found


def clients_warm_up() -> None:
    """Build the EC2 client of every configured region now: the web process calls this at start,
    so the first EC2 event does not pay for it before it can stop anything (0.5-3 s measured on
    a loaded machine)."""
    for region in settings.AWS_REGIONS:
        ec2(region)


def ec2(region: str):
    return _client("ec2", region)


def sqs(region: str):
    return _client("sqs", region)


def clients_reset() -> None:
    with _clients_lock:
        _clients.clear()


def _call(fn, **kwargs) -> dict:
    try:
        return fn(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise CloudError(
            f"{fn.__name__}: {code}: {exc}", transient=code in _TRANSIENT_CODES, code=code
        ) from exc
    except (EndpointConnectionError, ConnectionError) as exc:
        raise CloudError(f"{fn.__name__}: cannot reach AWS: {exc}", transient=True) from exc
    except BotoCoreError as exc:
        raise CloudError(f"{fn.__name__}: {exc}") from exc


def _plain(value: Any) -> Any:
    """JSON-safe copy of a boto3 answer (datetimes become ISO strings)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def instances_describe(*, region: str, instance_ids: list[str] | None = None) -> list[dict]:
    """Instance documents as the policies see them: describe_instances, plus the details of the
    instance's security groups (SecurityGroupDetails) and EBS volumes (Volumes)."""
    client = ec2(region)
    instances = [instance for instance, _owner in _instances_read(client, instance_ids)]
    for instance in instances:
        if not instance.get("SecurityGroups"):
            # EC2 lists the primary interface's groups on the instance; some S3/EC2 look-alikes
            # (moto) only on the interface. Same meaning, so the policies see one place.
            primary = next(
                (
                    n
                    for n in instance.get("NetworkInterfaces", [])
                    if n.get("Attachment", {}).get("DeviceIndex", 0) == 0
                ),
                None,
            )
            instance["SecurityGroups"] = list((primary or {}).get("Groups", []))
    group_ids = sorted({g["GroupId"] for i in instances for g in i.get("SecurityGroups", [])})
    volume_ids = sorted(
        {m["Ebs"]["VolumeId"] for i in instances for m in i.get("BlockDeviceMappings", []) if "Ebs" in m}
    )
    groups = {}
    for chunk in _chunks(group_ids, 200):
        groups |= {
            g["GroupId"]: g for g in _call(client.describe_security_groups, GroupIds=chunk)["SecurityGroups"]
        }
    volumes = {}
    for chunk in _chunks(volume_ids, 200):
        volumes |= {v["VolumeId"]: v for v in _call(client.describe_volumes, VolumeIds=chunk)["Volumes"]}
    documents = []
    for instance in instances:
        doc = _plain(instance)
        doc["SecurityGroupDetails"] = [
            _plain(groups[g["GroupId"]]) for g in instance.get("SecurityGroups", []) if g["GroupId"] in groups
        ]
        doc["Volumes"] = [
            _plain(volumes[m["Ebs"]["VolumeId"]])
            for m in instance.get("BlockDeviceMappings", [])
            if "Ebs" in m and m["Ebs"]["VolumeId"] in volumes
        ]
        documents.append(doc)
    return documents


def _instances_read(client, instance_ids: list[str] | None) -> list[tuple[dict, str]]:
    """describe_instances (all, or the ids named) with each reservation's owner account. EC2
    refuses the whole call when one id is unknown: then each id is read on its own, so one bad
    id in an event does not hide the real instances beside it (those EC2 does not know are
    left out)."""
    found: list[tuple[dict, str]] = []
    kwargs: dict[str, Any] = {"InstanceIds": instance_ids} if instance_ids else {}
    while True:
        try:
            page = _call(client.describe_instances, **kwargs)
        except CloudError as exc:
            if exc.code not in _UNKNOWN_INSTANCE_CODES or not instance_ids:
                raise
            if len(instance_ids) == 1:
                return []
            return [pair for one in instance_ids for pair in _instances_read(client, [one])]
        for reservation in page.get("Reservations", []):
            owner = reservation.get("OwnerId", "")
            found += [(instance, owner) for instance in reservation.get("Instances", [])]
        token = page.get("NextToken")
        if not token:
            return found
        kwargs["NextToken"] = token


@dataclass(frozen=True)
class LaunchFacts:
    """What EC2 says about an instance, to check a RunInstances event against."""

    instance_id: str
    launch_time: datetime | None
    owner_id: str
    state: str


def instances_launch_facts(*, region: str, instance_ids: list[str]) -> dict[str, LaunchFacts]:
    """The named instances EC2 knows (unknown ids are missing from the answer)."""
    return {
        instance["InstanceId"]: LaunchFacts(
            instance_id=instance["InstanceId"],
            launch_time=instance.get("LaunchTime"),
            owner_id=owner,
            state=(instance.get("State") or {}).get("Name", ""),
        )
        for instance, owner in _instances_read(ec2(region), instance_ids)
    }


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def instance_stop(*, region: str, instance_id: str) -> None:
    instances_stop(region=region, instance_ids=[instance_id])


def instances_stop(*, region: str, instance_ids: list[str]) -> None:
    _call(ec2(region).stop_instances, InstanceIds=instance_ids)


def instance_start(*, region: str, instance_id: str) -> None:
    _call(ec2(region).start_instances, InstanceIds=[instance_id])


def instance_terminate(*, region: str, instance_id: str) -> None:
    _call(ec2(region).terminate_instances, InstanceIds=[instance_id])


def instance_tags_set(*, region: str, instance_id: str, tags: dict[str, str]) -> None:
    _call(
        ec2(region).create_tags,
        Resources=[instance_id],
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


def instance_tags_delete(*, region: str, instance_id: str, keys: list[str]) -> None:
    _call(ec2(region).delete_tags, Resources=[instance_id], Tags=[{"Key": k} for k in keys])


def instance_groups_set(*, region: str, instance_id: str, group_ids: list[str]) -> None:
    _call(ec2(region).modify_instance_attribute, InstanceId=instance_id, Groups=group_ids)


def isolation_group_ensure(*, region: str, vpc_id: str) -> str:
    """The quarantine group of a VPC: no ingress and no egress. Created on first use."""
    client = ec2(region)
    name = settings.SECURITY_ISOLATION_GROUP_NAME
    found = _call(
        client.describe_security_groups,
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}],
    )["SecurityGroups"]
    if found:
        return found[0]["GroupId"]
    group_id = _call(
        client.create_security_group,
        GroupName=name,
        Description="Reelflow quarantine: no traffic in or out",
        VpcId=vpc_id,
    )["GroupId"]
    # A new group allows all egress by default; quarantine means nothing leaves either.
    _call(
        client.revoke_security_group_egress,
        GroupId=group_id,
        IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    return group_id
