"""bench/publish.py's detection figures: launches in the simulated cloud while the encode runs,
one caught only by the periodic sweep, one only by the event intake, and a poller outside
Reelflow timing each until EC2 says it is stopping."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from media_bench import med, rnd

EVENTS_TOKEN = "bench-security-events-token"  # noqa: S105 - a local benchmark
INTRUDER = "arn:aws:iam::123456789012:user/intruder"
ALLOWLIST = "arn:aws:iam::123456789012:role/reelflow-*"


@dataclass
class Launch:
    path: str  # "sweep" | "event"
    instance: str
    launched: float  # monotonic, when run_instances returned
    stopped: float | None = None
    posted_ms: float | None = None  # the event POST's round trip

    @property
    def seconds(self) -> float | None:
        return None if self.stopped is None else self.stopped - self.launched


class Detection:
    """Launches every `every` s until stopped; a poller outside Reelflow watches EC2."""

    def __init__(self, *, endpoint: str, origin: str, every: float):
        self.endpoint, self.origin, self.every = endpoint, origin, every
        self.launches: list[Launch] = []
        self.lock = threading.Lock()
        self.launching = threading.Event()
        self.done = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._launcher, daemon=True),
                        threading.Thread(target=self._poller, daemon=True)]  # fmt: skip

    def start(self) -> None:
        self.launching.set()
        for thread in self.threads:
            thread.start()

    def stop_launching(self) -> None:
        self.launching.clear()

    def wait_all_stopped(self, timeout: float) -> None:
        """Once the launcher is done (a launch in flight when the job ended is still watched),
        until every instance launched is stopped or `timeout` s have passed."""
        self.launching.clear()
        self.threads[0].join(timeout=120)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(launch.stopped is not None for launch in self.launches):
                    break
            time.sleep(0.2)
        self.done.set()
        self.threads[1].join(timeout=30)

    def _launcher(self) -> None:
        import random

        import requests

        from security import simcloud
        from security.services.ec2_events import CLOUDTRAIL_CALL

        ec2 = simcloud.ec2_client(self.endpoint)
        http = requests.Session()
        # Gaps drawn between half and one and a half times `every` (seeded): launches at a fixed
        # period would meet a sweep of the same period at one phase only, and measure one delay.
        gaps = random.Random(20)  # noqa: S311 - spacing, not secrets
        n = 0
        next_at = time.monotonic()
        while self.launching.is_set() and not self.done.is_set():
            try:
                # An intruder's own image, no event sent: the sweep's `ec2-approved-amis` stops it.
                instance = simcloud.instance_launch(
                    ec2, image_id=simcloud.UNAPPROVED_AMI, tags={**simcloud.COMPLIANT_TAGS, "Name": f"bench-sweep-{n}"}
                )
                with self.lock:
                    self.launches.append(Launch("sweep", instance, time.monotonic()))
                # A compliant instance launched by a principal outside the allowlist, announced
                # by its CloudTrail record at once: only the event intake can stop it.
                instance = simcloud.instance_launch(ec2, tags={**simcloud.COMPLIANT_TAGS, "Name": f"bench-event-{n}"})
                launch = Launch("event", instance, time.monotonic())
                with self.lock:
                    self.launches.append(launch)
                body = {
                    "version": "0", "id": f"eb-bench-{n}", "detail-type": CLOUDTRAIL_CALL, "source": "aws.ec2",
                    "account": "123456789012", "region": "us-east-1",
                    "detail": {"eventVersion": "1.08", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
                               "userIdentity": {"type": "IAMUser", "arn": INTRUDER, "accountId": "123456789012"},
                               "awsRegion": "us-east-1", "eventID": f"bench-{n}-{instance}", "eventType": "AwsApiCall",
                               "responseElements": {"instancesSet": {"items": [{"instanceId": instance}]}}},
                }  # fmt: skip
                t = time.monotonic()
                answer = http.post(f"{self.origin}/security/events/ec2/", json=body, timeout=60,
                                   headers={"Authorization": f"Bearer {EVENTS_TOKEN}"})  # fmt: skip
                launch.posted_ms = (time.monotonic() - t) * 1000
                if answer.status_code != 200:
                    self.errors.append(f"event intake answered {answer.status_code}: {answer.text[:200]}")
            except Exception as exc:  # noqa: BLE001 - reported with the figures
                self.errors.append(f"launch {n}: {type(exc).__name__}: {exc}"[:300])
            n += 1
            next_at += self.every * gaps.uniform(0.5, 1.5)
            while self.launching.is_set() and time.monotonic() < next_at:
                time.sleep(0.1)

    def _poller(self) -> None:
        from security import simcloud

        ec2 = simcloud.ec2_client(self.endpoint)
        while not self.done.is_set():
            with self.lock:
                pending = {launch.instance: launch for launch in self.launches if launch.stopped is None}
            if pending:
                try:
                    answer = ec2.describe_instances(InstanceIds=list(pending))
                    now = time.monotonic()
                    for reservation in answer["Reservations"]:
                        for instance in reservation["Instances"]:
                            if instance["State"]["Name"] in ("stopping", "stopped"):
                                pending[instance["InstanceId"]].stopped = now
                except Exception as exc:  # noqa: BLE001
                    self.errors.append(f"poll: {type(exc).__name__}: {exc}"[:300])
            time.sleep(0.1)

    def figures(self) -> dict:
        out = {}
        for path in ("sweep", "event"):
            launches = [launch for launch in self.launches if launch.path == path]
            seconds = [launch.seconds for launch in launches if launch.seconds is not None]
            out[path] = {
                "launches": len(launches), "stopped": len(seconds), "seconds": [round(s, 2) for s in seconds],
                "median_s": rnd(med(seconds)), "max_s": rnd(max(seconds)) if seconds else None,
                "post_ms_median": rnd(med([launch.posted_ms for launch in launches if launch.posted_ms is not None]), 1),
            }  # fmt: skip
        out["errors"] = self.errors[:5]
        return out
