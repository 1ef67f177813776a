"""Look at a job and act on it from the command line, as operations staff do in the console.

    manage.py job show 12                    state, rules checked, reviews, recent events
    manage.py job restart 12 --as olga       re-run only what is invalid or changed
    manage.py job approve 12 --as olga --reason "known partner"
    manage.py job reject 12 --as olga --reason "third-party logo"

Actions are recorded with the operator named by --as, who must hold the operations role.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.models import Event
from pipeline import selectors
from pipeline.models import EncodeJob, Review
from pipeline.services.actions import job_restart
from pipeline.services.common import JobActionRefused
from pipeline.services.publishing import job_review


class Command(BaseCommand):
    help = "Show a job, restart it, or approve/reject a job held for review."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["show", "restart", "approve", "reject"])
        parser.add_argument("job_id", type=int)
        parser.add_argument("--as", dest="operator", help="username of the operations user acting")
        parser.add_argument("--reason", default="", help="why (required to approve or reject)")

    def handle(self, *args, action: str, job_id: int, operator: str | None, reason: str, **options) -> None:
        try:
            job = EncodeJob.objects.select_related("asset__publisher", "profile").get(pk=job_id)
        except EncodeJob.DoesNotExist as exc:
            raise CommandError(f"no job {job_id}") from exc
        if action == "show":
            self._show(job)
            return
        actor = self._operator(operator)
        try:
            if action == "restart":
                step = job_restart(job_id=job_id, actor=actor)
                note = selectors.job_restart_note(job_id=job_id)
                self.stdout.write(self.style.SUCCESS(f"job {job_id} restarted from its {step} step{note}"))
            else:
                decision = Review.Decision.APPROVE if action == "approve" else Review.Decision.REJECT
                job = job_review(job_id=job_id, decision=decision, reason=reason, actor=actor)
                self.stdout.write(self.style.SUCCESS(f"job {job_id}: {job.get_state_display().lower()}"))
        except JobActionRefused as exc:
            raise CommandError(str(exc)) from exc

    def _operator(self, username: str | None):
        if not username:
            raise CommandError("say who acts: --as USERNAME (an operations user)")
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None or not user.has_perm("core.access_operations"):
            raise CommandError(f"{username!r} is not an active operations user")
        return user

    def _show(self, job: EncodeJob) -> None:
        w = self.stdout.write
        w(f"job {job.pk}: {job.get_state_display()} · asset {job.asset_id} “{job.asset.title}” of "
          f"{job.asset.publisher.get_username()} · profile {job.profile.slug}")
        if job.failure_reason:
            w(f"  reason: {job.failure_reason}")
        if job.master_playlist_key:
            w(f"  master playlist: {job.master_playlist_key}")
        evaluation = job.evaluations.order_by("-created_at", "-id").first()
        if evaluation:
            w(f"rules ({', '.join(evaluation.rule_sets) or 'none'}), checked {evaluation.created_at:%Y-%m-%d %H:%M:%S}:")
            for r in evaluation.results:
                w(f"  [{'pass' if r['passed'] else 'FAIL'}] {r['label']}: {r['measured']}")
        for review in job.reviews.select_related("actor"):
            who = review.actor.get_username() if review.actor else "?"
            w(f"review: {review.get_decision_display()} by {who} at {review.created_at:%Y-%m-%d %H:%M}: {review.reason}")
        events = Event.objects.filter(subject_type="pipeline.encodejob", subject_id=str(job.pk)).order_by("-id")[:15]
        w("recent events:")
        for e in reversed(events):
            w(f"  {e.created_at:%H:%M:%S} {e.type} ({e.actor_label})")
