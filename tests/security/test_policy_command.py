"""`manage.py policy validate` names the line of every error; `policy run --dry-run` says what
would fire on the inventory and changes nothing."""

import io

import pytest
from django.core.management import CommandError, call_command

from security.models import ResourceKind, ResponseAction, Violation
from security.policy import shipped_pack_path
from security.services.inventory import instance_upsert

BROKEN = """\
policies:
  - name: imdsv2
    resource: ec2
    filters:
      - type: value
        key: MetadataOptions.HttpTokens
        op: not-quite
        value: required
  - name: tags
    resource: ec2
    filters:
      - "tag:owner": absent
    actions:
      - type: reboot-twice
"""


def test_validate_reports_errors_with_line_numbers(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text(BROKEN)
    err = io.StringIO()
    with pytest.raises(CommandError, match="2 error"):
        call_command("policy", "validate", str(path), stderr=err)
    lines = err.getvalue().splitlines()
    assert lines[0].startswith(f"{path}:7: Custodian's schema: filters[0].op: 'not-quite' is not one of")
    assert lines[1].startswith(f"{path}:14: Custodian's schema: actions[0]")
    assert "reboot-twice" in lines[1]


def test_validate_accepts_the_shipped_pack():
    out = io.StringIO()
    call_command("policy", "validate", str(shipped_pack_path()), stdout=out)
    assert "OK: 10 policies" in out.getvalue()


@pytest.mark.django_db
def test_dry_run_lists_what_would_fire_and_changes_nothing(redis_conn):
    from security.fleet import registration_document

    doc = registration_document(worker_name="w-dry", queues=["default"])
    doc["Debug"] = True
    instance_upsert(kind=ResourceKind.WORKER, external_id="w-dry", config=doc, state="running")
    instance_upsert(
        kind=ResourceKind.EC2, external_id="i-dry", region="us-east-1", state="running",
        config={"InstanceId": "i-dry", "ImageId": "ami-0badc0ffee0000001", "InstanceType": "t3.small",
                "MetadataOptions": {"HttpTokens": "required"}, "Tags": []},
    )  # fmt: skip
    out = io.StringIO()
    call_command("policy", "run", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "worker-not-debug" in text and "shutdown-worker" in text
    assert "ec2-approved-amis" in text and "ec2-required-tags" in text and "ec2-imdsv2-required" not in text
    assert "nothing was changed" in text
    assert not Violation.objects.exists() and not ResponseAction.objects.exists()
