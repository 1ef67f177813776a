"""The shipped rule pack: every rule has fixtures that must fire and fixtures that must not."""

from pathlib import Path

import jmespath
import pytest
import yaml
from jmespath.exceptions import JMESPathError

from security.fleet import configured_fleet_version
from security.policy import policy_set_load, shipped_pack_path
from security.policy.jmes import compile_expression

FIXTURES = Path(__file__).parent / "rule_fixtures"
VERSION = configured_fleet_version()


def _resolve(value, version):
    if isinstance(value, str):
        return value.replace("{fleet_version}", version)
    if isinstance(value, dict):
        return {k: _resolve(v, version) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, version) for v in value]
    return value


def _resource(kind: str, patch: dict) -> dict:
    base = yaml.safe_load((FIXTURES / "_base.yaml").read_text())[kind]
    merged = {**base, **patch}
    return _resolve({k: v for k, v in merged.items() if v is not None}, VERSION)


@pytest.fixture(scope="module")
def pack():
    return policy_set_load([str(shipped_pack_path())], context={"fleet_version": VERSION})


def _cases(which: str):
    pack = policy_set_load([str(shipped_pack_path())], context={"fleet_version": "x"})
    for policy in pack:
        path = FIXTURES / f"{policy.name}.yaml"
        doc = yaml.safe_load(path.read_text()) if path.exists() else {}
        for case in doc.get(which, []):
            yield pytest.param(policy.name, case["resource"], id=f"{policy.name}: {case['name']}")


def test_every_shipped_rule_has_fixtures_both_ways(pack):
    for policy in pack:
        path = FIXTURES / f"{policy.name}.yaml"
        assert path.exists(), f"{policy.name} has no fixture file {path.name}"
        doc = yaml.safe_load(path.read_text())
        assert doc.get("fire"), f"{policy.name} has no fixture that must fire"
        assert doc.get("quiet"), f"{policy.name} has no fixture that must not fire"


@pytest.mark.parametrize("kind", ["ec2", "reelflow.worker"])
def test_compliant_base_fires_nothing(pack, kind):
    assert pack.matching(_resource(kind, {}), kind) == []


@pytest.mark.parametrize(("name", "patch"), list(_cases("fire")))
def test_rule_fires(pack, name, patch):
    policy = pack.get(name)
    resource = _resource(policy.resource, patch)
    assert policy.matches(resource), f"{name} should fire on {patch}"
    evidence = policy.explain(resource)
    assert any(c["offending"] for c in evidence["checks"]) and evidence["compliant"]


@pytest.mark.parametrize(("name", "patch"), list(_cases("quiet")))
def test_rule_stays_quiet(pack, name, patch):
    policy = pack.get(name)
    assert not policy.matches(_resource(policy.resource, patch)), f"{name} should not fire on {patch}"


def test_compiled_keys_agree_with_jmespath_on_every_fixture(pack):
    """The closure compiler must give jmespath's answer for every shipped key on every fixture."""
    resources = [_resource("ec2", {})]
    for path in FIXTURES.glob("ec2-*.yaml"):
        doc = yaml.safe_load(path.read_text())
        resources += [_resource("ec2", case["resource"]) for case in doc["fire"] + doc["quiet"]]
    keys = {
        c["key"] for p in pack for c in p.explain(resources[0])["checks"] if not c["key"].startswith("tag:")
    }
    keys |= {
        "SecurityGroupDetails[].IpPermissions[].IpRanges[].CidrIp",
        "Tags[?Key=='owner'].Value | [0]",
        "Volumes[*].Encrypted",
        "length(Tags) > `2` && !contains(Tags[].Key, 'role')",
        "{a: ImageId, b: InstanceType}",
        "[ImageId, Volumes[0].VolumeId]",
        "SecurityGroupDetails[0].IpPermissions[1:].FromPort",
        "MetadataOptions.*",
        "Volumes[?Encrypted] | length(@)",
        "sort_by(Tags, &Key)[0].Key",
    }

    def outcome(fn, resource):
        try:
            return fn(resource)
        except JMESPathError as exc:
            return type(exc).__name__

    for key in sorted(keys):
        compiled = compile_expression(key)
        for resource in resources:
            expected = outcome(lambda r, key=key: jmespath.search(key, r), resource)
            assert outcome(compiled, resource) == expected, (key, resource.get("InstanceId"))
