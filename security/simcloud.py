"""A SIMULATED cloud for development and tests: moto_server on 127.0.0.1 with a demo fleet.

`python -m security.simcloud --port 5005` (started by `make run` when no real AWS is
configured). Nothing here is AWS: moto answers the EC2 and SQS APIs from memory, and the fleet
is gone when the process stops. The same seeding helpers build fleets in the tests and the
benchmark, so all three see instances shaped by one function.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

import boto3

APPROVED_AMI = "ami-0a1b2c3d4e5f60001"  # in the shipped pack's approved list
UNAPPROVED_AMI = "ami-0badc0ffee0000001"
COMPLIANT_TAGS = {"owner": "media-platform", "service": "reelflow", "environment": "production"}
SIMULATED_KEY = "simulated"


def ec2_client(endpoint_url: str, region: str = "us-east-1"):
    return boto3.client(
        "ec2", endpoint_url=endpoint_url, region_name=region,
        aws_access_key_id=SIMULATED_KEY, aws_secret_access_key=SIMULATED_KEY,
    )  # fmt: skip


def _tags(tags: dict[str, str]) -> list[dict]:
    return [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def group_ensure(client, *, name: str, vpc_id: str, ingress: list[dict]) -> str:
    found = client.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    if found:
        return found[0]["GroupId"]
    group_id = client.create_security_group(GroupName=name, Description=f"demo {name}", VpcId=vpc_id)[
        "GroupId"
    ]
    if ingress:
        client.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ingress)
    return group_id


def instance_launch(
    client,
    *,
    compliant: bool = True,
    image_id: str | None = None,
    instance_type: str = "t3.small",
    http_tokens: str | None = None,
    encrypted: bool | None = None,
    tags: dict[str, str] | None = None,
    public_ip: bool | None = None,
    open_ssh: bool = False,
    worker: bool = False,
    hibernation: bool | None = None,
) -> str:
    """Launch one instance: compliant with every shipped rule unless told otherwise."""
    subnet = client.describe_subnets()["Subnets"][0]
    vpc_id = subnet["VpcId"]
    private = group_ensure(
        client, name="reelflow-private", vpc_id=vpc_id,
        ingress=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}],
    )  # fmt: skip
    groups = [private]
    if open_ssh:
        groups.append(
            group_ensure(
                client, name="legacy-ssh", vpc_id=vpc_id,
                ingress=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            )
        )  # fmt: skip
    all_tags = dict(COMPLIANT_TAGS if tags is None else tags)
    if worker:
        all_tags["role"] = "worker"
    answer = client.run_instances(
        ImageId=image_id or (APPROVED_AMI if compliant else UNAPPROVED_AMI),
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        MetadataOptions={"HttpTokens": http_tokens or ("required" if compliant else "optional")},
        BlockDeviceMappings=[
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {"VolumeSize": 8, "Encrypted": compliant if encrypted is None else encrypted},
            }
        ],
        NetworkInterfaces=[
            {
                "DeviceIndex": 0,
                "SubnetId": subnet["SubnetId"],
                "Groups": groups,
                "AssociatePublicIpAddress": (not compliant) if public_ip is None else public_ip,
            }
        ],
        TagSpecifications=_tags(all_tags) if all_tags else [],
        # EC2 always reports HibernationOptions; moto only when given (c7n's hibernating stop
        # reads it for every instance).
        **({"HibernationOptions": {"Configured": hibernation}} if hibernation is not None else {}),
    )
    return answer["Instances"][0]["InstanceId"]


def demo_fleet_seed(client) -> dict[str, list[str]]:
    """Four compliant instances and four that break different rules."""
    seeded = {"compliant": [], "non_compliant": []}
    for index in range(4):
        seeded["compliant"].append(
            instance_launch(client, worker=index < 2, tags={**COMPLIANT_TAGS, "Name": f"demo-ok-{index}"})
        )
    broken = [
        {"http_tokens": "optional", "tags": {**COMPLIANT_TAGS, "Name": "demo-imdsv1"}},
        {"open_ssh": True, "tags": {**COMPLIANT_TAGS, "Name": "demo-open-ssh"}},
        {"image_id": UNAPPROVED_AMI, "encrypted": False, "tags": {"Name": "demo-untagged-unapproved"}},
        {
            "worker": True,
            "public_ip": True,
            "instance_type": "p3.8xlarge",
            "tags": {**COMPLIANT_TAGS, "Name": "demo-public-worker"},
        },
    ]
    for options in broken:
        seeded["non_compliant"].append(instance_launch(client, **options))
    return seeded


def main(argv: list[str] | None = None) -> int:
    from moto.server import ThreadedMotoServer

    parser = argparse.ArgumentParser(prog="python -m security.simcloud", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5005)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--no-seed", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{args.port}"
    print(f"SIMULATED CLOUD (moto, not AWS) listening on {endpoint}", flush=True)  # noqa: T201
    if not args.no_seed:
        seeded = demo_fleet_seed(ec2_client(endpoint, args.region))
        print(  # noqa: T201
            f"SIMULATED CLOUD demo fleet in {args.region}: {len(seeded['compliant'])} compliant, "
            f"{len(seeded['non_compliant'])} non-compliant instances",
            flush=True,
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
