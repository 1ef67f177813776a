"""Publish rules: which rules apply to a job, and what each measured.

A packaged job is checked against every active rule of the rule sets that apply to it (the
default sets, and those attached to its profile or its publisher). All pass: the job is
published. Any fails: it is held for review, each failing rule named with the value it saw.
Rules read only what the pipeline stored (renditions, chunks, artifacts, quality scores, the
probe); evaluating them is cheap and repeatable, so a restart or an approval re-checks freely.

Each check returns (passed, measured, detail): `measured` is the value a reviewer compares with
the rule ("PSNR mean 33.1 dB at h264-720p"), `detail` says what was looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction

from django.db.models import Q

from core.roles import VERIFIED_PUBLISHERS_GROUP
from pipeline.media import planned_fps, video_info_from_json
from pipeline.models import (
    DEFAULT_BITRATE_TOLERANCE_PCT,
    DEFAULT_DURATION_TOLERANCE_FRAMES,
    METRIC_UNIT,
    Artifact,
    EncodeJob,
    QualityMetric,
    Rendition,
    RenditionKind,
    RenditionState,
    Rule,
    RuleKind,
    RuleSet,
    Unit,
    UnitState,
    fmt_value,
)
from pipeline.quality.selectors import job_quality_state, rendition_scores


@dataclass(frozen=True, slots=True)
class Outcome:
    rule: int
    rule_set: str
    label: str
    passed: bool
    measured: str
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class RuleConfigError(ValueError):
    """A rule that cannot be evaluated as configured (the message says which field)."""


# --- Which rules apply ----------------------------------------------------------------------


def rule_sets_for_job(job: EncodeJob) -> list[RuleSet]:
    return list(
        RuleSet.objects.filter(is_active=True)
        .filter(Q(is_default=True) | Q(profiles=job.profile_id) | Q(publishers=job.asset.publisher_id))
        .distinct()
        .order_by("name")
    )


def rules_for_job(job: EncodeJob) -> list[Rule]:
    sets = rule_sets_for_job(job)
    return list(Rule.objects.filter(rule_set__in=sets, enabled=True).select_related("rule_set").order_by("rule_set__name", "id"))


def needs_quality(rules: list[Rule], job: EncodeJob) -> bool:
    """Whether the job must wait for its quality measurements before it is checked: only when
    a quality rule reads the score of one of its renditions. A rule for 720p and up reads
    nothing of a job whose rungs are all smaller (a 16x16 source), so that job never waits."""
    quality_rules = [rule for rule in rules if rule.kind == RuleKind.QUALITY_MIN]
    if not quality_rules:
        return False
    heights = [h or 0 for h in job.renditions.filter(kind=RenditionKind.VIDEO).values_list("height", flat=True)]
    return any(not rule.min_height or any(h >= rule.min_height for h in heights) for rule in quality_rules)


# --- Labels ---------------------------------------------------------------------------------


def rule_label(rule: Rule) -> str:
    return rule.label


def rule_validate(rule: Rule) -> None:
    """Raise RuleConfigError when a rule lacks what its kind needs (forms call this)."""
    if rule.kind == RuleKind.QUALITY_MIN:
        if not rule.metric:
            raise RuleConfigError("A quality rule needs a metric (VMAF, PSNR or SSIM).")
        if rule.threshold is None:
            raise RuleConfigError("A quality rule needs a threshold.")
        if bool(rule.fallback_metric) != (rule.fallback_threshold is not None):
            raise RuleConfigError("Give both a fallback metric and its threshold, or neither.")
        if rule.fallback_metric and rule.fallback_metric == rule.metric:
            raise RuleConfigError("The fallback metric must differ from the metric.")
        for metric, value in ((rule.metric, rule.threshold), (rule.fallback_metric, rule.fallback_threshold)):
            if metric == QualityMetric.SSIM and value is not None and not 0 <= value <= 1:
                raise RuleConfigError("SSIM thresholds lie between 0 and 1.")
            if metric == QualityMetric.VMAF and value is not None and not 0 <= value <= 100:
                raise RuleConfigError("VMAF thresholds lie between 0 and 100.")
    if rule.tolerance is not None and rule.tolerance < 0:
        raise RuleConfigError("The tolerance cannot be negative.")


# --- Checks ---------------------------------------------------------------------------------


def _fps(job: EncodeJob) -> Fraction:
    return planned_fps(video_info_from_json(job.asset.probe["video"]))


def _videos(renditions: list[Rendition]) -> list[Rendition]:
    return [r for r in renditions if r.kind == RenditionKind.VIDEO]


def _check_renditions_valid(rule: Rule, job: EncodeJob, renditions: list[Rendition]) -> tuple[bool, str, str]:
    planned = sum(job.chunks.values_list("frame_count", flat=True))
    problems = []
    for r in renditions:
        if r.state != RenditionState.READY or not r.output_key:
            problems.append(f"{r.name} is {r.get_state_display().lower()}")
        elif r.kind == RenditionKind.VIDEO and r.frame_count != planned:
            problems.append(f"{r.name} has {r.frame_count} frames, planned {planned}")
    bad_units = Unit.objects.filter(job=job).exclude(state=UnitState.DONE).count()
    if bad_units:
        problems.append(f"{bad_units} unit(s) not done")
    valid = len(renditions) - sum(1 for p in problems if " unit(s) " not in p)
    measured = f"{valid} of {len(renditions)} renditions valid"
    if not renditions:
        return False, "no renditions", "the job produced nothing to publish"
    return not problems, measured, "; ".join(problems) or f"every rendition ready, {planned} frames each"


def _source_video_duration(job: EncodeJob) -> float | None:
    video = job.asset.probe.get("video") or {}
    return video.get("duration_s") or job.asset.duration_s


def _check_duration(rule: Rule, job: EncodeJob, renditions: list[Rendition]) -> tuple[bool, str, str]:
    fps = _fps(job)
    frames = rule.tolerance if rule.tolerance is not None else DEFAULT_DURATION_TOLERANCE_FRAMES
    limit = float(frames / fps) + 1e-6
    source = _source_video_duration(job)
    if source is None:
        return False, "source duration unknown", "the probe recorded no duration for the source"
    worst_name, worst = None, 0.0
    for r in _videos(renditions):
        if r.duration_s is None:
            return False, f"{r.name}: duration not measured", ""
        off = abs(r.duration_s - source)
        if worst_name is None or off > worst:
            worst_name, worst = r.name, off
    if worst_name is None:
        return False, "no video renditions", ""
    measured = f"{worst * 1000:.0f} ms off at {worst_name} (limit {limit * 1000:.0f} ms)"
    return worst <= limit, measured, f"source video lasts {source:.3f} s at {float(fps):g} fps"


def _unit_sizes(job: EncodeJob) -> dict[str, int]:
    return dict(
        Artifact.objects.filter(job=job, kind=Artifact.Kind.UNIT).exclude(size=None).values_list("key", "size")
    )


def _check_bitrate_cap(rule: Rule, job: EncodeJob, renditions: list[Rendition]) -> tuple[bool, str, str]:
    pct = rule.tolerance if rule.tolerance is not None else DEFAULT_BITRATE_TOLERANCE_PCT
    sizes = _unit_sizes(job)
    over, notes, checked = [], [], 0
    for r in _videos(renditions):
        cap = r.params.get("maxrate_kbps") or r.params.get("bitrate_kbps")
        if not cap:
            continue
        checked += 1
        if r.bitrate_kbps is None:
            over.append(f"{r.name}: bitrate not measured")
            continue
        # A VBV-compliant stream sends at most maxrate × T + bufsize bits in any T seconds, so
        # over the whole rendition its average may exceed maxrate by bufsize / duration (large
        # for a short clip, nothing for a long one).
        buffer = (r.params.get("bufsize_kbps") or 0) / r.duration_s if r.duration_s else 0
        limit = cap * (1 + pct / 100) + buffer
        # The peak chunk is reported, not judged: a VBV buffer of two seconds lets a short chunk
        # run above maxrate while the stream as a whole stays under it.
        peaks = [
            sizes[u.output_key] * 8 / 1000 / (u.chunk.end_s - u.chunk.start_s)
            for u in r.units.select_related("chunk")
            if u.output_key in sizes and u.chunk and u.chunk.end_s > u.chunk.start_s
        ]
        peak = f", peak chunk {max(peaks):.0f}" if peaks else ""
        notes.append(f"{r.name} {r.bitrate_kbps} of {cap} kb/s{peak}")
        if r.bitrate_kbps > limit:
            over.append(f"{r.name} averages {r.bitrate_kbps} kb/s, cap {cap} kb/s (limit {limit:.0f} with tolerance and buffer)")
    if not checked:
        return True, "no capped renditions", "no rendition declares a maxrate or bitrate"
    measured = "; ".join(over) if over else f"{checked} rendition(s) under their caps"
    return not over, measured, "; ".join(notes)


def _scores(rendition: Rendition) -> dict:
    return rendition_scores(rendition)


def quality_state(job: EncodeJob) -> str:
    """"off", "pending", "done" or "failed" (pipeline.quality.selectors)."""
    return job_quality_state(job)


def _check_quality(rule: Rule, job: EncodeJob, renditions: list[Rendition]) -> tuple[bool, str, str]:
    rule_validate(rule)
    targets = [r for r in _videos(renditions) if not rule.min_height or (r.height or 0) >= rule.min_height]
    if not targets:
        return True, f"no rungs ≥ {rule.min_height}p", "the rule applies to none of this job's renditions"
    failing, seen = [], []
    for r in targets:
        scores = _scores(r)
        metric, threshold = rule.metric, rule.threshold
        value = (scores.get(metric) or {}).get(rule.statistic)
        if value is None and rule.fallback_metric:
            metric, threshold = rule.fallback_metric, rule.fallback_threshold
            value = (scores.get(metric) or {}).get(rule.statistic)
        if value is None:
            state = quality_state(job)
            why = {"off": "quality measurement is off", "failed": "its quality measurement failed"}.get(state, "not measured")
            failing.append(f"{r.name}: {why}")
            continue
        unit = METRIC_UNIT.get(metric, "")
        name = QualityMetric(metric).label.split(" ")[0]
        seen.append(f"{name} {fmt_value(value, metric)}{unit} at {r.name}")
        if value < threshold:
            failing.append(f"{r.name}: {name} {fmt_value(value, metric)}{unit} < {fmt_value(threshold, metric)}{unit}")
    measured = "; ".join(failing) if failing else "; ".join(seen)
    return not failing, measured, f"{len(targets)} rendition(s) checked"


def _check_verified(rule: Rule, job: EncodeJob, renditions: list[Rendition]) -> tuple[bool, str, str]:
    publisher = job.asset.publisher
    verified = publisher.groups.filter(name=VERIFIED_PUBLISHERS_GROUP).exists()
    return verified, f"{publisher.get_username()} is {'verified' if verified else 'not verified'}", (
        f"membership of the '{VERIFIED_PUBLISHERS_GROUP}' group"
    )


CHECKS: dict[str, Callable[[Rule, EncodeJob, list[Rendition]], tuple[bool, str, str]]] = {
    RuleKind.RENDITIONS_VALID: _check_renditions_valid,
    RuleKind.QUALITY_MIN: _check_quality,
    RuleKind.DURATION_MATCH: _check_duration,
    RuleKind.BITRATE_CAP: _check_bitrate_cap,
    RuleKind.PUBLISHER_VERIFIED: _check_verified,
}


def evaluate(job: EncodeJob, rules: list[Rule]) -> list[Outcome]:
    """Every rule's outcome for the job as it stands. A rule that cannot be evaluated fails,
    saying why, rather than letting the job through."""
    renditions = list(Rendition.objects.filter(job=job).order_by("kind", "-height", "name"))
    outcomes = []
    for rule in rules:
        try:
            passed, measured, detail = CHECKS[rule.kind](rule, job, renditions)
        except RuleConfigError as exc:
            passed, measured, detail = False, "rule misconfigured", str(exc)
        outcomes.append(Outcome(rule.pk, rule.rule_set.name, rule_label(rule), passed, measured, detail))
    return outcomes


# --- Shipped rule sets ----------------------------------------------------------------------

SHIPPED_RULE_SETS = [
    {
        "name": "Baseline",
        "description": "Every job: every rendition valid, durations match the source, bitrates under their caps.",
        "is_default": True,
        "rules": [
            {"kind": "renditions_valid"},
            {"kind": "duration_match", "tolerance": 1},
            {"kind": "bitrate_cap", "tolerance": 5},
        ],
    },
    {
        "name": "Quality floor",
        "description": "HD rungs must look good: VMAF mean at least 80 for rungs of 720p and up "
        "(PSNR mean at least 35 dB where VMAF cannot be measured).",
        "is_default": False,
        "profiles": ["standard", "full"],
        "rules": [
            {"kind": "quality_min", "metric": "vmaf", "statistic": "mean", "threshold": 80, "min_height": 720,
             "fallback_metric": "psnr", "fallback_threshold": 35},
        ],
    },
]


def rule_sets_sync(rule_set_model, rule_model, profile_model, group_model) -> None:
    """Create the shipped rule sets that are missing (historical models in migrations, real
    ones elsewhere); a set that exists is left as operations staff edited it."""
    group_model.objects.get_or_create(name=VERIFIED_PUBLISHERS_GROUP)
    for data in SHIPPED_RULE_SETS:
        rule_set, created = rule_set_model.objects.get_or_create(
            name=data["name"], defaults={"description": data["description"], "is_default": data["is_default"]}
        )
        if not created:
            continue
        rule_set.profiles.set(profile_model.objects.filter(slug__in=data.get("profiles", [])))
        for rule in data["rules"]:
            rule_model.objects.create(rule_set=rule_set, **rule)
