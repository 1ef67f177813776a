"""Compliance benchmark: the shipped rule pack over 10,000 EC2 instances, and event-to-stop
latency for launches by an unauthorized principal, against a simulated cloud (moto_server).

    .venv/bin/python bench/compliance.py [--instances 10000] [--launches 100] [--repeat 5]

(a) evaluations per second: every instance x every shipped EC2 rule, through the compiled
    policies (closures over precompiled getters, Custodian's value-filter semantics), against a
    baseline measured in the same run: the same YAML interpreted naively (jmespath.search per
    filter, ops looked up by name); and c7n's own filters (Custodian's engine) over the same
    fleet. All three must find the same violations.
(b) event-to-shutdown latency: 100 launches, each announced by a CloudTrail RunInstances event
    (EventBridge shape) POSTed to the webhook; timed from the POST until EC2 (polled from
    outside every 10 ms) reports the instance stopping/stopped, p50 and p95; and the time until
    the webhook has answered (the stop recorded, the instance read and evaluated, the alert).

Prints the ratios and goals, then one line holding a JSON object of the figures.
"""

import argparse
import contextlib
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVALS_GOAL = 50_000
P95_GOAL_MS = 1000


def _setup(tmp: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["REELFLOW_VAR_DIR"] = str(tmp)
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


# --- (a) evaluations per second ------------------------------------------------------------------


def synthetic_fleet(count: int, seed: int = 7) -> list[dict]:
    """Instance documents shaped like aws.instances_describe's, a realistic mix of faults."""
    rng = random.Random(seed)
    approved = ["ami-0a1b2c3d4e5f60001", "ami-0a1b2c3d4e5f60002"]
    types = ["t3.small", "t3.medium", "c6i.large", "c6i.2xlarge", "m6i.large", "p3.8xlarge"]
    fleet = []
    for index in range(count):
        tags = [{"Key": "Name", "Value": f"node-{index}"}]
        for key in ("owner", "service", "environment"):
            if rng.random() > 0.05:
                tags.append({"Key": key, "Value": f"{key}-{index % 7}"})
        if rng.random() < 0.4:
            tags.append({"Key": "role", "Value": "worker"})
        permissions = [
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
                "Ipv6Ranges": [],
            }
        ]
        if rng.random() < 0.05:
            port = rng.choice([22, 3389])
            permissions.append(
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                    "Ipv6Ranges": [],
                }
            )
        doc = {
            "InstanceId": f"i-{index:017x}",
            "ImageId": approved[index % 2] if rng.random() > 0.05 else "ami-0badc0ffee0000001",
            "InstanceType": rng.choice(types) if rng.random() < 0.1 else types[index % 5],
            "State": {"Code": 16, "Name": "running"},
            "MetadataOptions": {
                "HttpTokens": "required" if rng.random() > 0.1 else "optional",
                "HttpEndpoint": "enabled",
            },
            "Tags": tags,
            "SecurityGroups": [{"GroupId": f"sg-{index % 50}", "GroupName": "app"}],
            "SecurityGroupDetails": [{"GroupId": f"sg-{index % 50}", "IpPermissions": permissions}],
            "Volumes": [
                {"VolumeId": f"vol-{index}-{n}", "Encrypted": rng.random() > 0.03}
                for n in range(rng.randint(1, 3))
            ],
        }
        if rng.random() < 0.3:
            doc["PublicIpAddress"] = f"54.0.{index % 250}.{index % 200}"
        fleet.append(doc)
    return fleet


def naive_matches(filters: list, resource: dict) -> bool:
    """The baseline: interpret the policy's filters as written, for every resource."""
    import re

    import jmespath

    for spec in filters:
        if "and" in spec:
            ok = naive_matches(spec["and"], resource)
        elif "or" in spec:
            ok = any(naive_matches([child], resource) for child in spec["or"])
        elif "not" in spec:
            ok = not naive_matches(spec["not"], resource)
        else:
            if spec.get("type") != "value":
                (key, value), op = next(iter(spec.items())), None
            else:
                key, value, op = spec["key"], spec.get("value"), spec.get("op")
            if key.startswith("tag:"):
                actual = next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key[4:]), None)
            else:
                try:
                    actual = jmespath.search(key, resource)
                except jmespath.exceptions.JMESPathError:
                    actual = None
            if op is None and value in ("absent", "present"):
                op = value
            op = op or "eq"
            if op == "eq":
                ok = actual == value
            elif op == "ne":
                ok = actual != value
            elif op == "in":
                ok = actual in value
            elif op == "not-in":
                ok = actual not in value
            elif op == "absent":
                ok = actual is None
            elif op == "present":
                ok = actual is not None
            elif op == "gt":
                ok = actual is not None and actual > value
            elif op == "lt":
                ok = actual is not None and actual < value
            elif op == "regex":
                ok = isinstance(actual, str) and re.match(value, actual, re.IGNORECASE) is not None
            elif op == "contains":
                ok = actual is not None and value in actual
            else:
                raise ValueError(op)
        if not ok:
            return False
    return True


def bench_evaluations(count: int, repeat: int) -> dict:
    import yaml

    from security.policy import policy_set_load, shipped_pack_path
    from security.policy.engine import resource_tags

    pack = policy_set_load([str(shipped_pack_path())], context={"fleet_version": "0"})
    policies = [p for p in pack if p.resource == "ec2"]
    raw = {p["name"]: p for p in yaml.safe_load(shipped_pack_path().read_text())["policies"]}
    raw_filters = [raw[p.name].get("filters", []) for p in policies]
    fleet = synthetic_fleet(count)
    evaluations = len(fleet) * len(policies)

    def compiled_run() -> set:
        fired = set()
        for index, resource in enumerate(fleet):
            tags = resource_tags(resource)
            for policy in policies:
                if policy.test(resource, tags):
                    fired.add((index, policy.name))
        return fired

    def naive_run() -> set:
        fired = set()
        for index, resource in enumerate(fleet):
            for policy, filters in zip(policies, raw_filters, strict=True):
                if naive_matches(filters, resource):
                    fired.add((index, policy.name))
        return fired

    compiled_times, naive_times = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        compiled = compiled_run()
        compiled_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        naive = naive_run()
        naive_times.append(time.perf_counter() - started)
    if compiled != naive:
        raise SystemExit(f"compiled and naive evaluations disagree on {len(compiled ^ naive)} results")
    custodian_s, custodian = bench_custodian(policies, fleet, repeat=max(1, repeat // 2))
    if compiled != custodian:
        raise SystemExit(f"compiled and c7n's evaluations disagree on {len(compiled ^ custodian)} results")
    compiled_s, naive_s = statistics.median(compiled_times), statistics.median(naive_times)
    return {
        "instances": len(fleet),
        "rules": len(policies),
        "evaluations": evaluations,
        "violations_found": len(compiled),
        "compiled_evals_per_s": round(evaluations / compiled_s),
        "baseline_evals_per_s": round(evaluations / naive_s),
        "speedup": round(naive_s / compiled_s, 2),
        "c7n_evals_per_s": round(evaluations / custodian_s),
        "compiled_vs_c7n": round(custodian_s / compiled_s, 2),
    }


def bench_custodian(policies: list, fleet: list[dict], *, repeat: int) -> tuple[float, set]:
    """(median seconds, what fired) for c7n's own filters (ValueFilter.match per leaf, through
    manager.filter_resources) over the same fleet: the reference the compiled evaluator must
    equal, timed so both engines' costs are known."""
    import copy

    from security.custodian import CustodianSelector

    selectors = [(p.name, CustodianSelector(p.spec.raw)) for p in policies]
    index_of = {doc["InstanceId"]: i for i, doc in enumerate(fleet)}
    times, fired = [], set()
    for _ in range(repeat):
        copies = [copy.deepcopy(fleet) for _ in selectors]  # c7n annotates what it filters
        started = time.perf_counter()
        fired = set()
        for (name, selector), docs in zip(selectors, copies, strict=True):
            manager = selector._policy("us-east-1").resource_manager
            fired |= {(index_of[d["InstanceId"]], name) for d in manager.filter_resources(docs)}
        times.append(time.perf_counter() - started)
    return statistics.median(times), fired


# --- (b) event-to-shutdown latency ---------------------------------------------------------------


def run_instances_event(instance_id: str, principal: str, *, event_id: str) -> dict:
    """CloudTrail's RunInstances record as EventBridge delivers it ("AWS API Call via CloudTrail")."""
    return {
        "version": "0",
        "id": f"eb-{event_id}",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ec2",
        "account": "123456789012",
        "region": "us-east-1",
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "arn": principal, "accountId": "123456789012"},
            # The launch just happened: the intake checks LaunchTime against it before stopping.
            "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": "ec2.amazonaws.com",
            "eventName": "RunInstances",
            "awsRegion": "us-east-1",
            "responseElements": {"instancesSet": {"items": [{"instanceId": instance_id}]}},
            "eventID": event_id,
            "eventType": "AwsApiCall",
        },
    }


@contextlib.contextmanager
def moto_server():
    """moto_server in its own process, as AWS is: the outside poller and the webhook must not
    share a GIL with it. Yields its endpoint."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("moto_server did not start") from None
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def launch_once(ec2, client, web: ThreadPoolExecutor, index: int) -> tuple[float, float]:
    """One unauthorized launch announced to the webhook: (ms until EC2 says stopping, ms until
    the webhook answered)."""
    from security import simcloud

    instance_id = simcloud.instance_launch(ec2)
    body = json.dumps(
        run_instances_event(
            instance_id, "arn:aws:iam::123456789012:user/intruder", event_id=f"bench-{index}"
        )
    )
    answered: dict = {}

    def post(body=body, answered=answered):
        answered["response"] = client.post(
            "/security/events/ec2/",
            data=body,
            content_type="application/json",
            HTTP_AUTHORIZATION="Bearer bench-token",
        )
        answered["at"] = time.perf_counter()

    # The webhook stops the instance first and then records, evaluates and alerts; the
    # latency that matters is until EC2 says "stopping", watched from outside. One
    # long-lived request thread, as a web server's: its boto3 client is made once.
    started = time.perf_counter()
    poster = web.submit(post)
    while True:
        state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0][
            "State"
        ]["Name"]
        if state in ("stopping", "stopped"):
            latency = (time.perf_counter() - started) * 1000
            break
        if time.perf_counter() - started > 10:
            raise SystemExit(f"{instance_id} not stopped after 10 s")
        time.sleep(0.01)
    poster.result()
    if answered["response"].status_code != 200:
        raise SystemExit(f"webhook answered {answered['response'].status_code}")
    return latency, (answered["at"] - started) * 1000


def bench_latency(launches: int) -> dict:
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from security import aws, simcloud

    logging.getLogger("security").setLevel(logging.ERROR)
    with moto_server() as endpoint:
        settings.AWS_REGIONS = ["us-east-1"]
        settings.AWS_ENDPOINT_URL_EC2 = settings.AWS_ENDPOINT_URL_SQS = endpoint
        settings.AWS_ACCESS_KEY_ID = settings.AWS_SECRET_ACCESS_KEY = simcloud.SIMULATED_KEY
        settings.SECURITY_EVENTS_TOKEN = "bench-token"  # noqa: S105 - a local benchmark
        settings.SECURITY_LAUNCH_ALLOWLIST = ["arn:aws:iam::123456789012:role/reelflow-*"]
        aws.clients_reset()
        ec2 = simcloud.ec2_client(endpoint)
        client = Client(HTTP_HOST="127.0.0.1")
        web = ThreadPoolExecutor(max_workers=1)
        simcloud.instance_launch(ec2)  # moto loads its catalogues on the first launch: not timed
        latencies, handled = [], []
        for index in range(launches):
            latency, answered_ms = launch_once(ec2, client, web, index)
            latencies.append(latency)
            handled.append(answered_ms)
        web.submit(lambda: connection.close()).result()  # the request thread's own connection
        web.shutdown()
    return {
        "launches": launches,
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p95_ms": round(percentile(latencies, 95), 1),
        "latency_max_ms": round(max(latencies), 1),
        "handled_p50_ms": round(percentile(handled, 50), 1),
        "handled_p95_ms": round(percentile(handled, 95), 1),
    }


def percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--launches", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reelflow-compliance-") as tmp:
        _setup(Path(tmp))
        evals = bench_evaluations(args.instances, args.repeat)
        print(
            f"(a) {evals['instances']} instances x {evals['rules']} rules = {evals['evaluations']} evaluations "
            f"({evals['violations_found']} violations)\n"
            f"    compiled: {evals['compiled_evals_per_s']:,}/s   baseline (naive jmespath): {evals['baseline_evals_per_s']:,}/s   "
            f"ratio {evals['speedup']}x   goal >= {EVALS_GOAL:,}/s: {'met' if evals['compiled_evals_per_s'] >= EVALS_GOAL else 'MISSED'} "
            f"({evals['compiled_evals_per_s'] / EVALS_GOAL:.1f}x the goal)\n"
            f"    c7n's own filters (Custodian's ValueFilter.match, the reference; same results): "
            f"{evals['c7n_evals_per_s']:,}/s   compiled is {evals['compiled_vs_c7n']}x faster",
            flush=True,
        )
        latency = bench_latency(args.launches)
        print(
            f"(b) {latency['launches']} unauthorized launches, event -> stopped: p50 {latency['latency_p50_ms']} ms, "
            f"p95 {latency['latency_p95_ms']} ms, max {latency['latency_max_ms']} ms   goal p95 <= {P95_GOAL_MS} ms: "
            f"{'met' if latency['latency_p95_ms'] <= P95_GOAL_MS else 'MISSED'} ({P95_GOAL_MS / latency['latency_p95_ms']:.1f}x under)\n"
            f"    whole event handled (stop, read, record, evaluate, alert): p50 {latency['handled_p50_ms']} ms, "
            f"p95 {latency['handled_p95_ms']} ms",
            flush=True,
        )
        print(json.dumps({"benchmark": "compliance", **evals, **latency}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
