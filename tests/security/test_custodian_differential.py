"""The differential test: real Cloud Custodian EC2 policies (tests/security/custodian_corpus/,
each with its source) on a fleet in moto. For every policy, what Reelflow selects from its
inventory equals what c7n 0.9.53 itself selects in pull mode against the same EC2 — or
Reelflow refuses the policy at validation, naming the key. Whichever engine Reelflow picked
for a policy (its compiled evaluator or c7n's filters) is what is being compared."""

import textwrap
from pathlib import Path

import pytest
import yaml

from security import simcloud
from security.custodian import custodian_policy, for_custodian
from security.models import Instance, InstanceState, ResourceKind
from security.policy import PolicySet, PolicyValidationError
from security.policy.loader import policies_parse
from security.services.evaluation import resource_document
from security.services.inventory import ec2_inventory_sweep

pytestmark = pytest.mark.django_db

CORPUS = Path(__file__).parent / "custodian_corpus" / "ec2.yml"
MUST_RUN = 25  # of the corpus's ordinary policies, at least this many run (the goal)


def corpus() -> list[dict]:
    return yaml.safe_load(CORPUS.read_text())["policies"]


def _launch(
    client,
    *,
    groups=("reelflow-private",),
    tags=None,
    http_tokens="required",
    encrypted=True,
    image_id=simcloud.APPROVED_AMI,
) -> str:
    """One instance with its groups given as SecurityGroupIds, so moto lists them on the instance
    (as EC2 does) for c7n's own query too, not only on its network interface."""
    subnet = client.describe_subnets()["Subnets"][0]
    rules = {
        "reelflow-private": [
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
        ],
        "legacy-ssh": [
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    }
    group_ids = [
        simcloud.group_ensure(client, name=g, vpc_id=subnet["VpcId"], ingress=rules[g]) for g in groups
    ]
    tags = simcloud.COMPLIANT_TAGS if tags is None else tags
    answer = client.run_instances(
        ImageId=image_id, InstanceType="t3.small", MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"],
        SecurityGroupIds=group_ids, MetadataOptions={"HttpTokens": http_tokens},
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "Encrypted": encrypted}}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        if tags else [],
    )  # fmt: skip
    return answer["Instances"][0]["InstanceId"]


@pytest.fixture
def fleet(cloud):
    """Instances that make the corpus's filters disagree if their meanings differ."""
    tags = simcloud.COMPLIANT_TAGS

    def launch(**options):
        return _launch(cloud.ec2, **options)

    ids = {
        "compliant": launch(),
        "imdsv1": launch(http_tokens="optional", tags={**tags, "Name": " Web ", "Cost": "10"}),
        "patch-stopped": launch(tags={**tags, "Patch Group": "Linux Dev", "Owner": ""}),
        "patch-running": launch(tags={**tags, "Patch Group": "Linux Dev", "PowerOffWhenDone": "True"}),
        "open-ssh": launch(
            groups=("reelflow-private", "legacy-ssh"), tags={**tags, "Cost": "3", "CreatorName": "ann"}
        ),
        "unencrypted": launch(encrypted=False, image_id=simcloud.UNAPPROVED_AMI),
        "offhours": launch(
            tags={
                **tags,
                "CustodianOffHours": "off=(M-U,19);on=(M-U,7);tz=pt",
                "custodian_downtime": "",
                "Name": "WEB",
            }
        ),  # fmt: skip
        "marked": launch(
            tags={
                **tags,
                "c7n_stopped_instance": "Resource does not meet policy: terminate@2020/01/01",
                "maid_status": "Resource does not meet policy: terminate@2020/01/01",
            }
        ),  # fmt: skip
        "untagged": launch(tags={}),
    }
    cloud.ec2.stop_instances(InstanceIds=[ids["patch-stopped"], ids["marked"]])
    ec2_inventory_sweep(region=cloud.region)
    return ids


def reelflow_selection(raw: dict) -> set[str] | str:
    """The instances Reelflow's policy fires on over the inventory, or the refusal's text."""
    try:
        specs = policies_parse(yaml.safe_dump({"policies": [raw]}), source="corpus.yml")
    except PolicyValidationError as exc:
        return str(exc)
    (policy,) = PolicySet(specs)
    instances = Instance.objects.filter(kind=ResourceKind.EC2).exclude(state=InstanceState.TERMINATED)
    return {i.external_id for i in instances if policy.matches(resource_document(i))}


def custodian_selection(raw: dict, region: str) -> set[str]:
    """What c7n selects on its own: its query against EC2, then its filters (pull mode, dry run)."""
    policy = custodian_policy(for_custodian(raw), region=region)
    return {r["InstanceId"] for r in policy.resource_manager.resources()}


def test_every_corpus_policy_selects_what_custodian_selects_or_is_refused_naming_the_key(fleet, cloud):
    ran, refused, engines = [], {}, {}
    for raw in corpus():
        mine = reelflow_selection(raw)
        if isinstance(mine, str):
            refused[raw["name"]] = mine
            continue
        theirs = custodian_selection(raw, cloud.region)
        assert mine == theirs, (raw["name"], sorted(mine), sorted(theirs))
        ran.append(raw["name"])
        engines[raw["name"]] = (
            PolicySet(policies_parse(yaml.safe_dump({"policies": [raw]}))).policies[0].engine
        )
    print(f"\nran {len(ran)}, refused {len(refused)}; engines: {engines}")  # noqa: T201 - the test's report
    for name, why in refused.items():
        print(f"refused {name}: {why}")  # noqa: T201
    # Refused ones name the key that is refused.
    assert set(refused) == {
        "ec2-start-stopped-instances",
        "ec2-stop-running-instances",
        "filters-doc-regex-list",
    }
    assert "`query`" in refused["ec2-start-stopped-instances"]
    assert "filters[0].value: op regex needs one regular expression" in refused["filters-doc-regex-list"]
    ordinary = [p for p in corpus() if not p["name"].startswith("filters-doc-")]
    assert len([n for n in ran if not n.startswith("filters-doc-")]) >= MUST_RUN, (len(ordinary), ran)


def test_the_fleet_makes_the_value_filter_cases_bite(fleet, cloud):
    """The cases the reviewer found Reelflow disagreeing on select something (or nothing) for
    the reason Custodian gives, not by accident of an empty fleet."""
    policies = {p["name"]: p for p in corpus()}
    assert reelflow_selection(policies["filters-doc-cost-greater-than"]) == set(), '"10" > 5 is a TypeError'
    absent = reelflow_selection(policies["filters-doc-absent-with-op"])
    assert fleet["open-ssh"] not in absent and fleet["compliant"] in absent
    assert reelflow_selection(policies["filters-doc-normalize"]) == set(), "WEB is never equal to 'web'"
    assert reelflow_selection(policies["ec2-require-imdsv2"]) == {fleet["imdsv1"]}
    assert fleet["marked"] in reelflow_selection(policies["ec2-delete-marked"])
    assert fleet["unencrypted"] not in reelflow_selection(policies["ec2-encrypted-ebs-volumes"])


def test_a_corpus_policy_is_text_a_reviewer_can_paste():
    text = textwrap.dedent(CORPUS.read_text())
    assert text.count("  # ") >= len(corpus()), "every policy notes its source"
