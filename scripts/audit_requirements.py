#!/usr/bin/env python3
"""Audit the installed, pinned dependencies for known vulnerabilities with pip-audit.

    .venv/bin/python scripts/audit_requirements.py            # CI: fail on a known vulnerability
    .venv/bin/python scripts/audit_requirements.py --strict   # also fail when nothing could be checked

pip-audit asks a vulnerability service about every package of the environment (the one
`make install-dev` built from requirements.txt and requirements-dev.txt). Where that service
cannot be reached, pip-audit marks each package "could not be audited" and still prints "No
known vulnerabilities found"; this wrapper counts what was really checked and says so loudly,
instead of passing silently.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strict", action="store_true", help="fail when no package could be audited")
    args = parser.parse_args(argv)
    result = subprocess.run(
        [str(VENV_BIN / "pip-audit"), "--progress-spinner", "off", "--format", "json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(f"pip-audit gave no report (exit {result.returncode}):\n{result.stderr[-2000:]}")
        return 1
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = len(deps) - len(skipped)
    vulnerable = [d for d in deps if d.get("vulns")]
    print(
        f"pip-audit: {len(deps)} packages installed, {audited} audited, {len(vulnerable)} with known vulnerabilities"
    )
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            print(f"  {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
    if skipped and not audited:
        reason = skipped[0].get("skip_reason", "")
        print(
            "WARNING: NOT AUDITED. The vulnerability service answered for none of the packages "
            f"(first reason: {reason!r}); this machine cannot reach it. Run this script where it can."
        )
        if args.strict:
            return 1
    elif skipped:
        print(
            f"note: {len(skipped)} packages could not be audited: {', '.join(d['name'] for d in skipped[:20])}"
        )
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
