"""Factories of the rows several apps' tests build without running the pipeline: users in a
role, and an encode job's asset, chunks, renditions and units.

Every attribute a test does not name is derived from the ones it does (a rendition's kind and
size from its name, a chunk's times from its index and the job's chunk length), so a call says
only what the test is about: `UnitFactory(rendition=r, chunk=c, state=UnitState.FAILED)`.
"""

import factory
from django.conf import settings
from django.contrib.auth.models import Group
from django.utils import timezone
from factory.django import DjangoModelFactory

from core.roles import Role
from core.services import roles_sync
from pipeline.models import (
    Asset,
    Chunk,
    EncodeJob,
    JobState,
    Profile,
    Rendition,
    RenditionKind,
    RenditionState,
    Unit,
    UnitState,
)


class UserFactory(DjangoModelFactory):
    """A user with password "pw"; `role=Role.OPERATIONS` puts it in that role's group."""

    class Meta:
        model = settings.AUTH_USER_MODEL
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("pw")

    @factory.post_generation
    def role(user, create, extracted, **kwargs):
        if extracted is None:
            return
        roles_sync()
        user.groups.add(Group.objects.get(name=extracted))


class AssetFactory(DjangoModelFactory):
    """An uploaded source in the ingest bucket, owned by a new publisher unless given one."""

    class Meta:
        model = Asset

    publisher = factory.SubFactory(UserFactory, role=Role.PUBLISHER)
    # Numbered, not Faker's words: a random English title could match what a page test looks for.
    title = factory.Sequence(lambda n: f"Clip {n}")
    source_bucket = factory.LazyFunction(lambda: settings.S3_BUCKET_INGEST)
    source_key = factory.LazyAttributeSequence(
        lambda asset, n: f"uploads/{asset.publisher.username}/{n}/clip.mp4"
    )
    duration_s = 8.0


class EncodeJobFactory(DjangoModelFactory):
    """A started job of the "fast" profile (the shipped ladders must be synced)."""

    class Meta:
        model = EncodeJob
        skip_postgeneration_save = True

    asset = factory.SubFactory(AssetFactory)
    profile = factory.LazyFunction(lambda: Profile.objects.get(slug="fast"))
    state = JobState.ENCODING
    chunk_seconds = 4
    segment_seconds = 2
    started_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def output_prefix(job, create, extracted, **kwargs):
        # The pipeline names a job's folder after the job's id, known only once the row is saved.
        job.output_prefix = extracted if extracted is not None else f"assets/{job.asset_id}/jobs/{job.pk}"
        if create:
            job.save(update_fields=["output_prefix"])


class ChunkFactory(DjangoModelFactory):
    """Chunk `index` of its job: its times follow from the job's chunk length, its first
    frame from the frame count every chunk before it is assumed to have."""

    class Meta:
        model = Chunk

    job = factory.SubFactory(EncodeJobFactory)
    index = factory.Sequence(lambda n: n)
    start_s = factory.LazyAttribute(lambda chunk: float(chunk.job.chunk_seconds * chunk.index))
    end_s = factory.LazyAttribute(lambda chunk: chunk.start_s + chunk.job.chunk_seconds)
    frame_count = 100
    start_frame = factory.LazyAttribute(lambda chunk: chunk.frame_count * chunk.index)


def _is_audio(rendition) -> bool:
    return rendition.name.startswith("aac")


class RenditionFactory(DjangoModelFactory):
    """A rendition named as the ladders name them: "h264-360p" is 360 lines of H.264 video,
    "aac-96k" is audio. A READY one has its output where the assembler writes it."""

    class Meta:
        model = Rendition

    job = factory.SubFactory(EncodeJobFactory)
    name = "h264-360p"
    kind = factory.LazyAttribute(lambda r: RenditionKind.AUDIO if _is_audio(r) else RenditionKind.VIDEO)
    height = factory.LazyAttribute(lambda r: None if _is_audio(r) else int(r.name.split("-")[1].rstrip("p")))
    width = factory.LazyAttribute(lambda r: None if r.height is None else r.height * 16 // 9 // 2 * 2)
    params = factory.LazyAttribute(
        lambda r: {"name": r.name, "codec": "aac" if _is_audio(r) else "libx264", "height": r.height}
    )
    state = RenditionState.ENCODING
    output_key = factory.LazyAttribute(
        lambda r: f"{r.job.output_prefix}/renditions/{r.name}.mp4" if r.state == RenditionState.READY else ""
    )


class UnitFactory(DjangoModelFactory):
    """One encode of a rendition: of one chunk (of the rendition's job), or of the whole file when
    `chunk` is None (audio). Costlier renditions first, then chunk order, as the planner ranks them."""

    class Meta:
        model = Unit

    rendition = factory.SubFactory(RenditionFactory)
    job = factory.SelfAttribute("rendition.job")
    chunk = None
    state = UnitState.QUEUED
    cost = factory.LazyAttribute(
        lambda u: (u.rendition.height or 1) * 1000 + (u.chunk.index if u.chunk else 0)
    )
    output_key = factory.LazyAttribute(
        lambda u: f"{u.job.output_prefix}/{u.rendition.name}/{u.chunk.index if u.chunk else 0}.mp4"
    )
    error = factory.LazyAttribute(lambda u: "boom" if u.state == UnitState.FAILED else "")
