"""The pictures of a package: the poster (from the tallest rung, at most 720 lines of it) and
the thumbnail sprite with its WebVTT (from a small rung off the critical paths: see
:func:`picture_sources`). The assemble step cuts
them from its joined file while other units still encode; the package step cuts only one that
is missing.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline import chunking, ffmpeg, packaging_cmds
from pipeline.media import planned_fps, video_info_from_json
from pipeline.models import EncodeJob, Rendition, RenditionKind
from pipeline.services.planning import first_playable
from pipeline.steps.common import upload


def package_prefix(job: EncodeJob) -> str:
    """The job's own package folder (the published one is ``services.publishing.published_prefix``)."""
    return f"{job.output_prefix}/package"


def picture_sources(job: EncodeJob) -> dict[str, Rendition]:
    """Which rendition each picture is cut from: the poster from the tallest video rung (at
    most 720 lines of it), the thumbnail sprite from the smallest rung that is neither the
    preview's (queued first: its assemble decides when the first preview plays) nor the
    smallest of several (queued last: its assemble is the job's tail); cheap to decode, its
    keyframes at most. With too few rungs, the smallest not the preview's, else any."""
    videos = list(Rendition.objects.filter(job=job, kind=RenditionKind.VIDEO).order_by("-height", "pk"))
    if not videos:
        return {}
    preview = first_playable(videos)
    off_paths = [v for v in videos[:-1] if v.pk not in preview] or [v for v in videos if v.pk not in preview] or videos
    return {"poster.jpg": videos[0], "sprite.jpg": off_paths[-1]}


def picture_commands(job: EncodeJob, sources: dict[str, tuple[str, Rendition]], out: Path) -> list[list[str]]:
    """ffmpeg runs writing the named pictures into ``out``, each from (input, rendition)."""
    asset = job.asset
    video_info = video_info_from_json(asset.probe["video"])
    segment_s = chunking.segment_duration_s(fps=planned_fps(video_info), segment_seconds=job.segment_seconds)
    commands = []
    for name, (input_url, rendition) in sources.items():
        if name == "poster.jpg":
            commands.append(packaging_cmds.poster_command(
                input_url=input_url, output_path=out / name, duration_s=asset.duration_s, source=video_info,
                height=min(720, rendition.height),
            ))  # fmt: skip
        else:
            layout = packaging_cmds.sprite_layout(duration_s=asset.duration_s, source=video_info)
            commands.append(packaging_cmds.sprite_command(
                input_url=input_url, output_path=out / name, layout=layout,
                keyframes_only=layout.interval_s >= segment_s,
            ))  # fmt: skip
    return commands


def run_at_once(commands: list[list[str]]) -> None:
    with ThreadPoolExecutor(max_workers=max(1, len(commands))) as pool:
        for done in [pool.submit(ffmpeg.run_ffmpeg, command) for command in commands]:
            done.result()


def pictures_check(out: Path, names) -> None:
    for name in names:
        # ffmpeg exits 0 when a filter emits no frame; never publish a package naming a
        # picture that is not there.
        if not (out / name).is_file():
            raise ffmpeg.PermanentMediaError(f"packaging wrote no {name} (ffmpeg produced no frame for it)")


def pictures_from_assembled(job: EncodeJob, rendition: Rendition, names: list[str], joined: Path, workdir: Path) -> None:
    """Cut the named pictures from this rendition's joined file, still on disk, into the
    package: while other units still encode, not in the job's tail."""
    out = workdir / "pictures"
    out.mkdir()
    run_at_once(picture_commands(job, {name: (str(joined), rendition) for name in names}, out))
    pictures_check(out, names)
    for name in names:
        upload(out / name, f"{package_prefix(job)}/{name}")


