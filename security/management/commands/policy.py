"""`manage.py policy validate FILE...` / `policy run [--dry-run]` / `policy list`."""

import json

from django.core.management.base import BaseCommand, CommandError

from security.policy import PolicyValidationError, policy_set_current, policy_set_load


class Command(BaseCommand):
    help = (
        "Validate policy files, or run the policies over the inventory (--dry-run: only say what would fire)."
    )

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        validate = sub.add_parser("validate", help="check policy files; errors carry line numbers")
        validate.add_argument("files", nargs="+")
        run = sub.add_parser("run", help="evaluate the inventory against the policies")
        run.add_argument("--dry-run", action="store_true", help="change nothing, print what would fire")
        run.add_argument(
            "--file", action="append", dest="files", help="policy file(s) instead of SECURITY_POLICY_PATHS"
        )
        run.add_argument(
            "--refresh", action="store_true", help="read EC2 (AWS_REGIONS) into the inventory first"
        )
        run.add_argument("--resource", choices=["ec2", "reelflow.worker"], help="only this resource type")
        run.add_argument("--json", action="store_true", help="print JSON")
        sub.add_parser("list", help="list the active policies")

    def handle(self, *args, **options) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _validate(self, options) -> None:
        try:
            # Placeholders ({fleet_version}) stay as written: checking syntax needs no database.
            policies = policy_set_load(options["files"], context={})
        except PolicyValidationError as exc:
            for error in exc.errors:
                self.stderr.write(str(error))
            raise CommandError(f"{len(exc.errors)} error(s)") from None
        self.stdout.write(
            self.style.SUCCESS(f"OK: {len(policies)} policies in {len(options['files'])} file(s)")
        )

    def _load(self, files):
        try:
            return policy_set_load(files) if files else policy_set_current()
        except PolicyValidationError as exc:
            raise CommandError(f"the policies do not validate:\n{exc}") from None

    def _run(self, options) -> None:
        from django.conf import settings

        from security.services.evaluation import inventory_evaluate, policies_dry_run
        from security.services.inventory import ec2_instances_refresh

        policies = self._load(options["files"])
        if options["refresh"]:
            for region in settings.AWS_REGIONS:
                ec2_instances_refresh(region=region)
        if options["dry_run"]:
            kinds = [options["resource"]] if options["resource"] else None
            findings = policies_dry_run(policies=policies, kinds=kinds)
            if options["json"]:
                self.stdout.write(json.dumps([f.__dict__ for f in findings], indent=2))
                return
            for f in findings:
                actions = ", ".join(f.actions) or "alert only"
                self.stdout.write(
                    f"WOULD FIRE  {f.severity:<8} {f.policy:<30} {f.kind}:{f.resource}  [{actions}]  (violation: {f.state})"
                )
            self.stdout.write(f"{len(findings)} finding(s) over the current inventory; nothing was changed.")
            return
        reports = inventory_evaluate(policies=policies)
        summary = {
            "evaluated": len(reports),
            "opened": sum(len(r.opened) for r in reports),
            "resolved": sum(len(r.resolved) for r in reports),
            "responses": sum(len(r.responses) for r in reports),
        }
        self.stdout.write(
            json.dumps(summary) if options["json"] else ", ".join(f"{k}: {v}" for k, v in summary.items())
        )

    def _list(self, options) -> None:
        for p in self._load(None):
            actions = ", ".join(a.type for a in p.actions) or "alert"
            self.stdout.write(
                f"{p.name:<30} {p.resource:<16} {p.severity:<8} {p.mode:<9} [{actions}]  {p.spec.source}:{p.spec.line}"
            )
