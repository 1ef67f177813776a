"""The policy language: Cloud Custodian's value filters, boolean blocks, modes, actions, and
validation that names the line of every mistake."""

import textwrap

import pytest

from security.models import ResourceKind
from security.policy import PolicySet, PolicyValidationError, Trigger
from security.policy.loader import MODE_ON_START, MODE_PERIODIC, policies_parse


def load(text: str, **context) -> PolicySet:
    return PolicySet(policies_parse(textwrap.dedent(text), source="test.yml", context=context))


def errors_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyValidationError) as caught:
        policies_parse(textwrap.dedent(text), source="test.yml")
    return [(e.line, e.message) for e in caught.value.errors]


def test_real_cloud_custodian_policy_runs_unchanged():
    # From Cloud Custodian's EC2 examples: IMDSv2 enforcement in a Lambda mode with a role.
    policies = load(
        """
        policies:
          - name: ec2-require-imdsv2
            resource: aws.ec2
            description: Stop instances that allow IMDSv1
            comment: deploy with c7n
            mode:
              type: cloudtrail
              role: arn:aws:iam::{account_id}:role/CustodianRole
              events:
                - source: ec2.amazonaws.com
                  event: RunInstances
                  ids: "responseElements.instancesSet.items[].instanceId"
            filters:
              - "tag:c7n-exempt": absent
              - type: value
                key: MetadataOptions.HttpTokens
                op: ne
                value: required
              - State.Name: running
            actions:
              - type: mark-for-op
            """.replace("mark-for-op", "stop")
    )
    (policy,) = policies
    assert policy.resource == ResourceKind.EC2 and policy.mode == MODE_ON_START
    running_v1 = {"MetadataOptions": {"HttpTokens": "optional"}, "State": {"Name": "running"}, "Tags": []}
    assert policy.matches(running_v1)
    assert not policy.matches({**running_v1, "Tags": [{"Key": "c7n-exempt", "Value": "yes"}]})
    assert not policy.matches({**running_v1, "MetadataOptions": {"HttpTokens": "required"}})
    assert [a.type for a in policy.actions] == ["stop"]


@pytest.mark.parametrize(
    ("op", "value", "actual", "fires"),
    [
        ("eq", "a", "a", True), ("eq", "a", "b", False), ("equal", 3, 3, True),
        ("ne", "a", None, True), ("not-equal", "a", "a", False),
        ("in", ["a", "b"], "b", True), ("in", ["a"], None, False),
        ("not-in", ["a"], "b", True), ("ni", ["a"], "a", False), ("not-in", ["a"], None, True),
        ("regex", "^prod-", "PROD-web", True), ("regex", "^prod-", "dev", False), ("regex", "x", 5, False),
        ("contains", "b", ["a", "b"], True), ("contains", "b", None, False), ("contains", "ell", "hello", True),
        ("gt", 5, 6, True), ("gt", 5, "10", False), ("gt", 5, None, False), ("lt", 5, 4, True),
        ("ge", 5, 5, True), ("le", 5, 6, False),
        ("absent", None, None, True), ("absent", None, 0, False), ("present", None, "", True),
    ],
)  # fmt: skip
def test_value_filter_ops(op, value, actual, fires):
    # Custodian spells absent/present as values, never as ops; "10" > 5 is a TypeError, so False.
    value_line = f"value: {value!r}".replace("'", '"').replace("None", "null")
    if op in ("absent", "present"):
        op, value_line = "eq", f"value: {op}"
    policies = load(
        f"""
        policies:
          - name: p
            resource: ec2
            filters:
              - type: value
                key: A.B
                op: {op}
                {value_line}
        """
    )
    resource = {"A": {"B": actual}} if actual is not None else {"A": {}}
    assert policies.get("p").matches(resource) is fires


def test_custodian_value_spellings_absent_present_empty():
    policies = load(
        """
        policies:
          - {name: a, resource: ec2, filters: [{"tag:owner": absent}]}
          - {name: b, resource: ec2, filters: [{type: value, key: PublicIpAddress, value: present}]}
          - {name: c, resource: ec2, filters: [{type: value, key: Tags, value: empty}]}
          - {name: d, resource: ec2, filters: [{type: value, key: Name, value_type: normalize, value: web}]}
          - {name: d-upper, resource: ec2, filters: [{type: value, key: Name, value_type: normalize, value: WEB}]}
          - {name: e, resource: ec2, filters: [{type: value, key: Tags, value_type: size, op: gt, value: 1}]}
        """
    )
    names = lambda r: [p.name for p in policies.matching(r, "ec2")]  # noqa: E731
    assert names({"Tags": []}) == ["a", "c"]
    assert names(
        {
            "Tags": [{"Key": "owner", "Value": "x"}, {"Key": "b", "Value": "y"}],
            "PublicIpAddress": "1.1.1.1",
            "Name": " Web ",
        }
    ) == ["b", "d", "e"], "Custodian normalizes the resource's value only: WEB never matches"


def test_and_or_not_blocks():
    policies = load(
        """
        policies:
          - name: p
            resource: ec2
            filters:
              - or:
                  - InstanceType: p3.8xlarge
                  - and:
                      - "tag:role": worker
                      - not:
                          - {type: value, key: PublicIpAddress, value: absent}
        """
    )
    p = policies.get("p")
    assert p.matches({"InstanceType": "p3.8xlarge"})
    assert p.matches({"Tags": [{"Key": "role", "Value": "worker"}], "PublicIpAddress": "1.2.3.4"})
    assert not p.matches({"Tags": [{"Key": "role", "Value": "worker"}]})
    assert not p.matches({"PublicIpAddress": "1.2.3.4"})
    checks = p.explain({"Tags": [{"Key": "role", "Value": "worker"}], "PublicIpAddress": "1.2.3.4"})["checks"]
    absent = next(c for c in checks if c["key"] == "PublicIpAddress")
    # Under `not`, the leaf that failed is the offending one; compliant means it must hold.
    assert (
        absent["held"] is False and absent["offending"] is True and "must not be set" in absent["compliant"]
    )


def test_modes_select_policies_by_trigger():
    policies = load(
        """
        policies:
          - {name: start, resource: ec2, mode: {type: ec2-instance-state, events: [running]}}
          - {name: periodic, resource: ec2, mode: {type: periodic}}
          - {name: default, resource: ec2}
          - {name: worker, resource: reelflow.worker, mode: {type: on-start}}
        """
    )
    assert policies.get("default").mode == MODE_PERIODIC
    assert [p.name for p in policies.applicable("ec2", Trigger.START)] == ["start"]
    assert [p.name for p in policies.applicable("ec2", Trigger.SWEEP)] == ["start", "periodic", "default"]
    assert [p.name for p in policies.applicable("reelflow.worker", Trigger.START)] == ["worker"]


def test_fleet_version_placeholder_is_filled_where_the_policy_runs():
    policies = load(
        """
        policies:
          - {name: v, resource: reelflow.worker, filters: [{type: value, key: Version, op: ne, value: "{fleet_version}"}]}
        """,
        fleet_version="1.2.3",
    )
    assert not policies.get("v").matches({"Version": "1.2.3"})
    assert policies.get("v").matches({"Version": "1.2.2"})


def test_actions_are_normalized():
    (p,) = load(
        """
        policies:
          - name: q
            resource: ec2
            actions:
              - alert
              - {type: mark, tags: {a: "1"}}
              - {type: tag, key: b, value: two}
              - {type: modify-security-groups, remove: all, isolation-group: sg-iso}
              - terminate
              - {type: stop, hibernate: true}
              - {type: terminate, force: true}
              - {type: modify-security-groups, remove: matched, add: [sg-1]}
              - {type: notify, to: [sec@example.com], transport: {type: sqs, queue: q}}
        """
    )
    # Reelflow runs an action itself only when it honours every parameter; the rest is c7n's.
    assert [(a.type, a.params) for a in p.actions] == [
        ("alert", {}),
        ("tag", {"tags": {"a": "1"}}),
        ("tag", {"tags": {"b": "two"}}),
        ("quarantine", {"isolation-group": "sg-iso"}),
        ("terminate", {}),
        ("custodian", {"action": {"type": "stop", "hibernate": True}}),
        ("custodian", {"action": {"type": "terminate", "force": True}}),
        ("custodian", {"action": {"type": "modify-security-groups", "remove": "matched", "add": ["sg-1"]}}),
        ("custodian", {"action": {"type": "notify", "to": ["sec@example.com"], "transport": {"type": "sqs", "queue": "q"}}}),
    ]


def test_validation_reports_every_error_with_its_line():
    errors = errors_of(
        """
        policies:
          - name: ok-one
            resource: ec2
            filters:
              - type: value
                key: MetadataOptions.HttpTokens
                op: equalish
                value: required
          - name: bad resource
            resource: aws.s3
          - name: ok-one
            resource: ec2
            filters:
              - type: marked-for-op
                op: stop
                skew: many
            actions:
              - {type: mark, days: 4, op: stop}
            frobnicate: true
          - name: worker-one
            resource: reelflow.worker
            actions:
              - stop
        """
    )
    lines = dict(errors)
    # EC2 policies are Custodian's to accept: its schema's errors, on the line of the key.
    assert "filters[0].op: 'equalish' is not one of" in lines[8]
    assert "a policy needs a `name`" in lines[10]
    assert "resource 'aws.s3' is not supported" in lines[11]
    assert "already used on line 3" in lines[12]
    # (c7n's schema may stop at a policy's first error: the unknown key, on the policy's line)
    assert any("'frobnicate' was unexpected" in m for n, m in errors if n == 12)
    assert "action 'stop' is not available for reelflow.worker" in lines[24]


def test_custodian_refuses_what_it_refuses_naming_the_key():
    for body, says in [
        ("actions: [{type: mark, days: 4, op: stop}]", "('days', 'op' were unexpected)"),
        ("filters: [{type: instance-age, dayz: 4}]", "'dayz' was unexpected"),
        ("filters: [{type: value, key: A, op: regex, value: [a, b]}]", "Custodian:"),
        ("query: [{instance-state-name: stopped}]", "`query`"),
        ("conditions: [{type: value, key: region, value: us-east-1}]", "`conditions`"),
        ("mode: {type: ec2-instance-state, events: [booting]}", "mode.events[0]: 'booting' is not one of"),
    ]:
        (error,) = errors_of(f"policies:\n  - name: p\n    resource: ec2\n    {body}\n")
        assert says in error[1], (body, error)


def test_yaml_syntax_and_duplicate_keys_have_lines():
    assert errors_of("policies:\n  - name: a\n    resource: ec2\n   filters: [\n")[0][0] in (3, 4, 5)
    (error,) = errors_of("policies:\n  - name: a\n    resource: ec2\n    name: b\n")
    assert error == (4, "duplicate key 'name'")
    assert errors_of("rules: []\n") == [(1, "the file needs a top-level `policies:` list")]


def test_missing_and_wrong_values_are_reported():
    errors = errors_of(
        """
        policies:
          - name: p
            resource: reelflow.worker
            filters:
              - {type: value, key: A, op: regex, value: "("}
              - {type: value, op: eq, value: x}
              - {type: value, key: A, op: absent}
            severity: apocalyptic
        """
    )
    text = "\n".join(f"{line}: {msg}" for line, msg in errors)
    for expected in ["6: invalid regular expression", "7: a value filter needs a `key`",
                     "8: op 'absent' is not one of Custodian's", "(write `value: absent|present`)",
                     "9: severity 'apocalyptic'"]:  # fmt: skip
        assert expected in text
