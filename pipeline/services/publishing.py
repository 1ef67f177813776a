"""Publishing: the publish rules decide a packaged job (PUBLISHING, or HELD for review with
each failing rule named), an operator decides a held one, and the publish step's copy of the
package ends in PUBLISHED. One verb throughout: publish.
"""

from django.db import transaction
from django.utils import timezone

from pipeline import queues, rules
from pipeline.models import AssetState, EncodeJob, JobState, Review, RuleEvaluation
from pipeline.services.common import JobActionRefused, asset_state_set, job_event, job_state_message


def published_prefix(job: EncodeJob) -> str:
    """Where a published package lives: one stable folder per asset and job, apart from the
    jobs' working outputs (a CDN or a public-read policy can be pointed at `published/`)."""
    return f"published/{job.asset_id}/{job.pk}"


@transaction.atomic
def job_rules_decide_early(*, job_id: int) -> str | None:
    """A PACKAGING job, before its package is written: when the publish rules can be decided now
    (no quality measurement pending) and all pass, record that evaluation and return the
    published prefix. The package is then written there directly and the job is PUBLISHED as
    soon as it is: no copy of every file after. Every input of the rules (renditions, unit
    sizes, quality, the publisher) is final by now.

    None: write the package to the job's own prefix; the rules are checked once it is written
    (a failing rule holds the job there, out of the published prefix, for review)."""
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state != JobState.PACKAGING:
        return None
    applicable = rules.rules_for_job(job)
    if rules.needs_quality(applicable, job) and rules.quality_state(job) == "pending":
        return None
    outcomes = rules.evaluate(job, applicable)
    if not all(o.passed for o in outcomes):
        return None
    evaluation = RuleEvaluation.objects.create(
        job=job, passed=True, results=[o.as_dict() for o in outcomes], rule_sets=sorted({o.rule_set for o in outcomes}),
    )
    job_event(job, "job.rules_evaluated", evaluation=evaluation.pk, passed=True, rules=len(outcomes), failures=[])
    return published_prefix(job)


def job_rules_check(job: EncodeJob, *, actor=None) -> RuleEvaluation | None:
    """Evaluate a CHECKING job (locked by the caller) against its rules, unless a quality rule
    applies and the measurements are still running: `job_quality_finished` comes back then.

    All pass -> PUBLISHING (the promote step copies the package); any fails -> HELD, each
    failing rule named with its measured value."""
    applicable = rules.rules_for_job(job)
    if rules.needs_quality(applicable, job) and rules.quality_state(job) == "pending":
        job_event(job, "job.waiting_for_quality")
        return None
    outcomes = rules.evaluate(job, applicable)
    passed = all(o.passed for o in outcomes)
    evaluation = RuleEvaluation.objects.create(
        job=job, passed=passed, results=[o.as_dict() for o in outcomes],
        rule_sets=sorted({o.rule_set for o in outcomes}),
    )
    failures = [f"{o.label}: {o.measured}" for o in outcomes if not o.passed]
    job_event(
        job, "job.rules_evaluated", actor=actor, evaluation=evaluation.pk, passed=passed,
        rules=len(outcomes), failures=failures,
    )
    if passed:
        _job_publish_start(job, actor=actor)
    else:
        job.state = JobState.HELD
        job.failure_reason = "Held for review: " + "; ".join(failures)
        job.save(update_fields=["state", "failure_reason"])
        asset_state_set(job.asset, AssetState.HELD, job=job.pk)
        job_event(job, "job.held", actor=actor, evaluation=evaluation.pk, failures=failures)
        job_state_message(job)
    return evaluation


def _job_publish_start(job: EncodeJob, *, actor=None) -> None:
    job.state = JobState.PUBLISHING
    job.failure_reason = ""
    job.save(update_fields=["state", "failure_reason"])
    job_event(job, "job.publishing", actor=actor)
    job_state_message(job)
    queues.enqueue_on_commit(queues.Entry.PUBLISH_JOB, job.pk, rq_id=f"publish-{job.pk}")


@transaction.atomic
def job_quality_finished(*, job_id: int) -> EncodeJob:
    """The last quality measurement of the job ended: a job waiting on it is checked now."""
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state == JobState.CHECKING:
        job_rules_check(job)
    return job


@transaction.atomic
def job_publish(*, job_id: int, master_key: str, dash_key: str, poster_key: str, published_prefix: str) -> EncodeJob:
    """PUBLISHING -> PUBLISHED once the package is promoted to the published prefix."""
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state != JobState.PUBLISHING:
        return job
    job_published(job, master_key=master_key, dash_key=dash_key, poster_key=poster_key, prefix=published_prefix)
    return job


def job_published(job: EncodeJob, *, master_key: str, dash_key: str, poster_key: str, prefix: str) -> None:
    job.state = JobState.PUBLISHED
    job.master_playlist_key = master_key
    job.dash_manifest_key = dash_key
    job.published_prefix = prefix
    job.finished_at = timezone.now()
    job.save(update_fields=["state", "master_playlist_key", "dash_manifest_key", "published_prefix", "finished_at"])
    asset = job.asset
    asset.poster_key = poster_key
    asset.save(update_fields=["poster_key"])
    asset_state_set(asset, AssetState.READY, job=job.pk)
    job_event(job, "job.published", master=master_key, dash=dash_key, prefix=prefix)
    job_state_message(job)


@transaction.atomic
def job_review(*, job_id: int, decision: str, reason: str, actor) -> EncodeJob:
    """An operator's decision on a HELD job: approve (publish anyway) or reject, with a reason."""
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state != JobState.HELD:
        raise JobActionRefused(
            f"Job {job.pk} is {job.get_state_display().lower()}: only a job held for review can be approved or rejected."
        )
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise JobActionRefused("Give a reason for the decision: it is recorded with the job.")
    if decision not in Review.Decision.values:
        raise JobActionRefused(f"Unknown decision {decision!r}.")
    evaluation = job.evaluations.order_by("-created_at", "-id").first()
    Review.objects.create(job=job, evaluation=evaluation, decision=decision, reason=reason[:2000], actor=actor)
    if decision == Review.Decision.APPROVE:
        job_event(job, "job.approved", actor=actor, reason=reason, evaluation=evaluation.pk if evaluation else None)
        _job_publish_start(job, actor=actor)
    else:
        job.state = JobState.REJECTED
        job.finished_at = timezone.now()
        job.save(update_fields=["state", "finished_at"])
        if not job.asset.jobs.filter(state=JobState.PUBLISHED).exists():
            asset_state_set(job.asset, AssetState.REJECTED, job=job.pk)
        job_event(job, "job.rejected", actor=actor, reason=reason)
        job_state_message(job)
    return job


