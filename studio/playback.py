"""Playback of a published package without making the media bucket public.

Playlists are served by Django (`studio:hls`), which checks who asks, then rewrites every URI
inside: playlists point back at the view, media and init segments become short-lived
presigned GET URLs on the endpoint browsers reach. The sprite's WebVTT gets the same
treatment for its image. Package files never change once published, so texts read from S3
are cached, and rewritten ones are cached for half their URLs' lifetime.
"""

import math
import posixpath
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.cache import cache

from core import s3
from pipeline.models import EncodeJob, JobState

MASTER = "master.m3u8"
SPRITE_VTT = "sprite.vtt"
SPRITE_IMAGE = "sprite.jpg"
POSTER = "poster.jpg"
# Relative paths of plain names only: no "..", no absolute path, no scheme, no query.
_PLAYLIST_PATH = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*/)*[A-Za-z0-9_][A-Za-z0-9_.-]*\.m3u8$")
_URI_ATTRIBUTE = re.compile(r'URI="([^"]*)"')
_SIGV4_MAX_SECONDS = 7 * 24 * 3600
_SOURCE_CACHE_SECONDS = 3600


class PlaylistNotFound(LookupError):
    """Not a playlist of this package (or not one the view serves)."""


@dataclass(frozen=True)
class Package:
    """What the playlist view serves: a folder of the media bucket, the path of the master
    playlist inside it, and the duration its media URLs must outlast."""

    folder: str
    master: str
    duration_s: float | None


def published_package(job: EncodeJob) -> Package:
    return Package(folder=job.master_playlist_key.rsplit("/", 1)[0], master=MASTER, duration_s=job.asset.duration_s)


# A job packaged but not published yet: its rules are being checked (or wait for quality
# scores), it is being published, or an operator is to decide.
_PACKAGED_UNPUBLISHED = (JobState.CHECKING, JobState.PUBLISHING, JobState.HELD)


def preview_package(job: EncodeJob) -> Package | None:
    """What the job's owner can watch before it is published: its package once written (every
    rung), else the preview over the renditions ready so far (pipeline/steps/preview.py), whose
    playlists address the job's stored renditions (so its folder is the job's own); None when
    there is neither, or the job has ended otherwise."""
    if job.state in _PACKAGED_UNPUBLISHED and job.master_playlist_key:
        return published_package(job)
    if job.state in (JobState.ENCODING, JobState.PACKAGING) and job.preview_key:
        return Package(
            folder=job.output_prefix, master=job.preview_key.removeprefix(f"{job.output_prefix}/"),
            duration_s=job.asset.duration_s,
        )
    return None


def url_seconds(duration_s: float | None) -> int:
    """Long enough to watch the whole video twice over, at least the setting, at most SigV4's 7 days:
    a player fetches a VOD playlist once and then plays for as long as the video lasts."""
    wanted = settings.STUDIO_PLAYBACK_URL_SECONDS + math.ceil(2 * (duration_s or 0))
    return min(wanted, _SIGV4_MAX_SECONDS)


def media_url(package: Package, relative: str, *, expires: int) -> str:
    return s3.presign_get(settings.S3_BUCKET_MEDIA, f"{package.folder}/{relative}", expires=expires, public=True)


def _resolve(base_path: str, uri: str) -> str:
    """`uri` relative to the playlist at `base_path`, as a path inside the package."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(base_path), uri))
    if joined.startswith(("../", "/")) or joined == "..":
        raise PlaylistNotFound(f"{uri!r} points outside the package")
    return joined


def _is_absolute(uri: str) -> bool:
    return "://" in uri or uri.startswith(("/", "data:"))


def playlist_rewrite(
    text: str, *, playlist_path: str, playlist_url: Callable[[str], str], media_url: Callable[[str], str]
) -> str:
    """Every relative URI of an HLS playlist (URI lines, and URI="..." in EXT-X-MAP,
    EXT-X-MEDIA, EXT-X-I-FRAME-STREAM-INF and the like) replaced: playlists by
    `playlist_url(path)`, anything else by `media_url(path)`; paths are package-relative."""

    done: dict[str, str] = {}

    def replace(uri: str) -> str:
        if not uri or _is_absolute(uri):
            return uri
        # A byte-range playlist names one file per segment line: sign it once, so every range
        # of it is fetched with the same URL (one cache entry in the browser and the CDN).
        if uri not in done:
            path = _resolve(playlist_path, uri)
            done[uri] = playlist_url(path) if path.endswith(".m3u8") else media_url(path)
        return done[uri]

    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            lines.append(line)
        elif stripped.startswith("#"):
            lines.append(_URI_ATTRIBUTE.sub(lambda m: f'URI="{replace(m.group(1))}"', line))
        else:
            lines.append(replace(stripped))
    return "\n".join(lines) + "\n"


def playlist_uris(text: str, *, playlist_path: str) -> set[str]:
    """The package paths of the playlists a playlist refers to."""
    found: set[str] = set()

    def note(path: str) -> str:
        found.add(path)
        return path

    playlist_rewrite(text, playlist_path=playlist_path, playlist_url=note, media_url=lambda path: path)
    return found


def vtt_rewrite(text: str, *, media_url: Callable[[str], str]) -> str:
    """A thumbnail WebVTT with each cue's image (`sprite.jpg#xywh=...`) replaced by
    `media_url(path)` keeping the fragment."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if (
            stripped
            and "-->" not in stripped
            and not stripped.startswith(("WEBVTT", "NOTE"))
            and " " not in stripped
        ):
            target, _, fragment = stripped.partition("#")
            if target and not _is_absolute(target):
                stripped = media_url(_resolve(SPRITE_VTT, target)) + (f"#{fragment}" if fragment else "")
            lines.append(stripped)
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _package_text(package: Package, relative: str) -> str:
    key = f"{package.folder}/{relative}"

    def read() -> str:
        try:
            body = s3.client().get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise PlaylistNotFound(f"{relative} is not in the package") from exc
            raise
        try:
            return body.read().decode("utf-8")
        finally:
            body.close()

    return cache.get_or_set(f"studio:package:{key}", read, _SOURCE_CACHE_SECONDS)


def playlist_for(*, package: Package, path: str, playlist_url: Callable[[str], str]) -> str:
    """The package's playlist at `path` with its URIs rewritten; `playlist_url(path)` is the
    view's URL for another playlist (the same for every viewer, so the result is cached).

    Only the master playlist and the playlists it names are served.
    """
    if not _PLAYLIST_PATH.match(path):
        raise PlaylistNotFound(f"{path!r} is not a playlist path")
    master = package.master
    if path != master and path not in playlist_uris(_package_text(package, master), playlist_path=master):
        raise PlaylistNotFound(f"{path} is not named by the master playlist")
    expires = url_seconds(package.duration_s)
    cache_key = f"studio:hls:{package.folder}:{path}"
    cached = cache.get(cache_key)
    if cached is None:
        cached = playlist_rewrite(
            _package_text(package, path),
            playlist_path=path,
            playlist_url=playlist_url,
            media_url=lambda p: media_url(package, p, expires=expires),
        )
        # Half the URLs' lifetime: a cached copy still has the other half to play with.
        cache.set(cache_key, cached, max(60, expires // 2))
    return cached


def sprite_vtt_for(*, package: Package) -> str:
    expires = url_seconds(package.duration_s)
    cache_key = f"studio:vtt:{package.folder}"
    cached = cache.get(cache_key)
    if cached is None:
        cached = vtt_rewrite(
            _package_text(package, SPRITE_VTT), media_url=lambda p: media_url(package, p, expires=expires)
        )
        cache.set(cache_key, cached, max(60, expires // 2))
    return cached


def download_url(*, bucket: str, key: str, filename: str, expires: int | None = None) -> str:
    """A presigned GET that makes the browser save the object as `filename`."""
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(filename)}"
    return s3.client(public=True).generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": key, "ResponseContentDisposition": disposition},
        ExpiresIn=expires or settings.S3_PRESIGN_SECONDS,
    )
