"""Reads of delivery: which package a playback URL opens, and whether it may."""

from dataclasses import dataclass

from delivery import signing
from delivery.models import AssetDelivery, PlaybackPolicy, PublisherDelivery
from pipeline import selectors as pipeline_selectors
from pipeline.models import Asset, EncodeJob

PUBLIC_TOKEN = "public"  # noqa: S105 - the token segment of a public asset's URLs


class Unplayable(Exception):
    """Why a playback URL does not play: an HTTP status, a code and words for the viewer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Playable:
    asset: Asset
    delivery: AssetDelivery
    job: EncodeJob
    token: str

    @property
    def folder(self) -> str:
        return self.job.master_playlist_key.rsplit("/", 1)[0]


def playable(*, playback_id: str, token: str) -> Playable:
    """The published package a playback URL opens, checked now (so a takedown, a policy change
    or a deletion refuses the very next request); Unplayable otherwise."""
    delivery = (
        AssetDelivery.objects.select_related("asset", "asset__publisher").filter(playback_id=playback_id).first()
    )
    if delivery is None:
        raise Unplayable(404, "not_found", "No video has this playback id (it may have been deleted).")
    if delivery.is_taken_down:
        raise Unplayable(451, "taken_down", "This video was taken down and cannot be played.")
    if delivery.policy == PlaybackPolicy.PRIVATE:
        raise Unplayable(403, "private", "This video is private: it plays only in its publisher's studio.")
    if delivery.policy == PlaybackPolicy.SIGNED or token != PUBLIC_TOKEN:
        try:
            signing.token_verify(playback_id=playback_id, token=token)
        except signing.TokenInvalid as exc:
            raise Unplayable(403, "token_invalid", str(exc)) from exc
    job = pipeline_selectors.job_published_latest(asset=delivery.asset)
    if job is None or not job.master_playlist_key:
        raise Unplayable(404, "not_published", "Nothing is published for this video yet.")
    return Playable(asset=delivery.asset, delivery=delivery, job=job, token=token)


def embed_origins(*, publisher) -> list[str]:
    found = PublisherDelivery.objects.filter(publisher=publisher).first()
    return list(found.embed_origins) if found else []
