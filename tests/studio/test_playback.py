"""Playlist and WebVTT rewriting, on the texts ffmpeg's packager writes."""

import pytest

from studio.playback import PlaylistNotFound, playlist_rewrite, playlist_uris, url_seconds, vtt_rewrite

MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_A1",NAME="audio_3",DEFAULT=YES,URI="media_3.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=1453000,AVERAGE-BANDWIDTH=980000,RESOLUTION=854x480,CODECS="avc1.64001e",AUDIO="group_A1"
media_0.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="iframes/media_0.m3u8"
"""

MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="init-0.m4s"
#EXTINF:2.000000,
chunk-0-00001.m4s
#EXTINF:1.500000,
https://cdn.example.com/absolute.m4s
#EXT-X-ENDLIST
"""


def rewrite(text: str, path: str) -> str:
    return playlist_rewrite(
        text, playlist_path=path, playlist_url=lambda p: f"/view/{p}", media_url=lambda p: f"S3:{p}"
    )


def test_master_playlists_go_to_the_view_and_attributes_are_kept():
    out = rewrite(MASTER, "master.m3u8")
    assert 'URI="/view/media_3.m3u8"' in out
    assert "\n/view/media_0.m3u8\n" in out
    assert 'URI="/view/iframes/media_0.m3u8"' in out
    assert 'RESOLUTION=854x480,CODECS="avc1.64001e",AUDIO="group_A1"' in out
    assert playlist_uris(MASTER, playlist_path="master.m3u8") == {
        "media_3.m3u8",
        "media_0.m3u8",
        "iframes/media_0.m3u8",
    }


def test_media_segments_and_init_go_to_s3_and_absolute_uris_stay():
    out = rewrite(MEDIA, "media_0.m3u8")
    assert '#EXT-X-MAP:URI="S3:init-0.m4s"' in out
    assert "\nS3:chunk-0-00001.m4s\n" in out
    assert "\nhttps://cdn.example.com/absolute.m4s\n" in out
    assert out.count("#EXTINF") == 2 and out.endswith("#EXT-X-ENDLIST\n")


def test_relative_uris_resolve_against_the_playlists_folder():
    out = rewrite('#EXT-X-MAP:URI="../init.m4s"\nseg.m4s\n', "video/720/media.m3u8")
    assert 'URI="S3:video/init.m4s"' in out and "S3:video/720/seg.m4s" in out


def test_uris_escaping_the_package_are_refused():
    with pytest.raises(PlaylistNotFound):
        rewrite("../../secret.m4s\n", "media_0.m3u8")


def test_sprite_vtt_keeps_the_fragment_and_timing():
    vtt = "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nsprite.jpg#xywh=0,0,160,90\n\n00:00:05.000 --> 00:00:09.000\nsprite.jpg#xywh=160,0,160,90\n"
    out = vtt_rewrite(vtt, media_url=lambda p: f"https://s3/{p}?sig")
    assert out.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:05.000\n")
    assert (
        "https://s3/sprite.jpg?sig#xywh=0,0,160,90" in out
        and "https://s3/sprite.jpg?sig#xywh=160,0,160,90" in out
    )


def test_url_lifetime_covers_watching_a_long_video(settings):
    settings.STUDIO_PLAYBACK_URL_SECONDS = 3600
    assert url_seconds(None) == 3600
    assert url_seconds(2 * 3600) == 3600 + 4 * 3600
    assert url_seconds(10**7) == 7 * 24 * 3600
