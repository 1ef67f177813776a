"""Custodian's `notify` action through Reelflow's notifications (notifications.services.notify).

A policy's `notify` runs on c7n as written (its message goes to the `transport` c7n-mailer
reads), and Reelflow also sends the violation's alert to the recipients in `to` that name its
own notification teams (`secops`) or channels (`secops/pager`). Other recipients (addresses,
`resource-owner`, `event-owner`, Slack URLs) are c7n-mailer's. docs/security.md.
"""

from __future__ import annotations

import logging
import re

from core.models import Alert
from notifications.services import notify

logger = logging.getLogger(__name__)

_TEAM = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9_-]*/[A-Za-z0-9][\w .-]*$")


def notify_targets(policy) -> tuple[list[str], list[str]]:
    """(teams, "team/name" channels) named in the `to` of the policy's notify actions."""
    teams: list[str] = []
    channels: list[str] = []
    for action in policy.actions:
        written = action.params.get("action", {}) if action.type == "custodian" else {}
        if written.get("type") != "notify":
            continue
        for target in written.get("to") or []:
            if not isinstance(target, str) or "@" in target or "://" in target:
                continue
            if _CHANNEL.match(target):
                channels.append(target)
            elif _TEAM.match(target) and target not in ("resource-owner", "event-owner"):
                teams.append(target)
    return teams, channels


def policy_notify(*, policy, alert: Alert | None) -> int:
    """Send the violation's alert to the teams and channels the policy's notify names; how many
    channels will hear of it."""
    teams, channels = notify_targets(policy)
    if alert is None or not (teams or channels):
        return 0
    count = notify(alert=alert, teams=teams, channels=channels)
    if not count:
        logger.warning("policy %s: notify names %s, which match no enabled notification channel",
                       policy.name, ", ".join(teams + channels))  # fmt: skip
    return count
