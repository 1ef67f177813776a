"""The shipped encoding ladders, as data. A migration loads them; operations staff edit them in
the admin afterwards (a later migration never overwrites an edited rung, it only adds).

- `fast`: 3 H.264 rungs for demos and tests.
- `standard`: H.264 240p-1080p (6 rungs, after Apple's HLS authoring ladder), AAC 128k and 64k.
- `full`: the case study's scale, 60 streams: 14 rungs for each of H.264, HEVC, VP9 and AV1
  (7 heights at two rates) plus 4 audio variants.
"""

# height -> (H.264 target kbps at the "high" quality, at the "low" one)
_FULL_HEIGHTS = {
    144: (200, 120),
    240: (450, 300),
    360: (900, 600),
    480: (1600, 1100),
    720: (3500, 2400),
    1080: (6000, 4200),
    1440: (10000, 7000),
}
# Newer codecs reach the same quality at a fraction of H.264's rate.
_CODEC_RATE = {"libx264": 1.0, "libx265": 0.65, "libvpx-vp9": 0.7, "libsvtav1": 0.55}
_CODEC_CRF = {"libx264": 23, "libx265": 27, "libvpx-vp9": 33, "libsvtav1": 35}
_CODEC_SHORT = {"libx264": "h264", "libx265": "hevc", "libvpx-vp9": "vp9", "libsvtav1": "av1"}


def _capped(codec: str, height: int, kbps: int, suffix: str, crf_delta: int = 0) -> dict:
    rate = round(kbps * _CODEC_RATE[codec])
    return {
        "name": f"{_CODEC_SHORT[codec]}-{height}p{suffix}",
        "codec": codec,
        "height": height,
        "crf": _CODEC_CRF[codec] + crf_delta,
        "maxrate_kbps": rate,
        "bufsize_kbps": rate * 2,
        "preset": "",
    }


def _h264(height: int, maxrate: int, crf: int = 23, preset: str = "") -> dict:
    return {
        "name": f"h264-{height}p",
        "codec": "libx264",
        "height": height,
        "crf": crf,
        "maxrate_kbps": maxrate,
        "bufsize_kbps": maxrate * 2,
        "preset": preset,
    }


LADDERS: dict[str, dict] = {
    "fast": {
        "name": "Fast (3 H.264 rungs)",
        "description": "Three small H.264 rungs for demos and tests; encodes in a fraction of real time.",
        "video": [
            _h264(240, 400, preset="veryfast"),
            _h264(360, 800, preset="veryfast"),
            _h264(480, 1400, preset="veryfast"),
        ],
        "audio": [{"name": "aac-96k", "codec": "aac", "bitrate_kbps": 96, "channels": 2}],
    },
    "standard": {
        "name": "Standard (H.264 240p-1080p)",
        "description": "Six H.264 rungs from 240p to 1080p with AAC at 128k and 64k.",
        "video": [
            _h264(240, 400),
            _h264(360, 800),
            _h264(480, 1400),
            _h264(720, 2800),
            _h264(1080, 5000),
            {**_h264(1080, 7800, crf=20), "name": "h264-1080p-hq"},
        ],
        "audio": [
            {"name": "aac-128k", "codec": "aac", "bitrate_kbps": 128, "channels": 2},
            {"name": "aac-64k", "codec": "aac", "bitrate_kbps": 64, "channels": 2},
        ],
    },
    "full": {
        "name": "Full (60 streams, 4 codecs)",
        "description": "The case study's scale: H.264, HEVC, VP9 and AV1 at 7 heights and 2 rates, plus 4 audio variants.",
        "video": [
            _capped(codec, height, rates[i], suffix, crf_delta)
            for codec in _CODEC_SHORT
            for height, rates in _FULL_HEIGHTS.items()
            for i, (suffix, crf_delta) in enumerate([("", 0), ("-lo", 4)])
        ],
        "audio": [
            {"name": "aac-128k", "codec": "aac", "bitrate_kbps": 128, "channels": 2},
            {"name": "aac-64k", "codec": "aac", "bitrate_kbps": 64, "channels": 2},
            {"name": "opus-96k", "codec": "libopus", "bitrate_kbps": 96, "channels": 2},
            {"name": "opus-48k", "codec": "libopus", "bitrate_kbps": 48, "channels": 2},
        ],
    },
}

# Encode cost of a pixel relative to x264 at its default preset; used to queue longest work first.
CODEC_COST = {"libx264": 1.0, "libx265": 4.0, "libvpx-vp9": 3.0, "libsvtav1": 2.5}
# Cost of one second of an audio rendition on the same scale (pixels x frames x codec cost):
# one 60 s AAC rendition took 0.9-1.1 CPU-s where a 20 s 720p x264 chunk (461 M pixel-frames)
# took about 7, so a second of audio weighs about as much as a million pixel-frames. Priced
# too low, audio units queue behind the smallest rungs and two of them end a job on one core.
AUDIO_COST_PER_S = 1_000_000


def ladders_sync(profile_model, video_model, audio_model) -> None:
    """Create missing profiles and rungs (historical models in migrations, real ones elsewhere)."""
    for slug, data in LADDERS.items():
        profile, _ = profile_model.objects.get_or_create(
            slug=slug, defaults={"name": data["name"], "description": data["description"]}
        )
        for spec in data["video"]:
            video_model.objects.get_or_create(profile=profile, name=spec["name"], defaults=spec)
        for spec in data["audio"]:
            audio_model.objects.get_or_create(profile=profile, name=spec["name"], defaults=spec)
