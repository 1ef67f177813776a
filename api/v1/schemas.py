"""Request and response shapes of API v1. Requests refuse unknown fields (a typo is an error,
not a silent no-op)."""

from datetime import datetime

from ninja import Schema
from pydantic import ConfigDict, Field


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")


class PlaybackOut(Schema):
    policy: str
    playback_id: str
    hls: str | None
    dash: str | None
    embed: str | None
    expires_at: str | None
    downloads: dict[str, str] = Field(default_factory=dict, description="MP4 (video and audio) per downloadable rung")


class AssetOut(Schema):
    id: int
    title: str
    state: str
    created_at: datetime
    duration_s: float | None
    width: int | None
    height: int | None
    source_size: int | None
    metadata: dict
    policy: str
    playback_id: str
    downloadable: list[str]
    legal_hold: bool
    taken_down: bool
    latest_job: int | None
    latest_job_state: str | None


class AssetPage(Schema):
    items: list[AssetOut]
    next_cursor: str | None


class AssetPatch(Strict):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    metadata: dict[str, str] | None = Field(default=None, max_length=50)
    policy: str | None = Field(default=None, pattern="^(public|signed|private)$")
    downloadable: list[str] | None = Field(default=None, max_length=20)
    legal_hold: bool | None = Field(default=None, description="keep backup copies past retention if deleted")


class TakedownIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class RenditionOut(Schema):
    id: int
    name: str
    kind: str
    state: str
    width: int | None
    height: int | None
    bitrate_kbps: int | None
    codecs: str
    duration_s: float | None
    units_total: int
    units_done: int
    downloadable: bool


class JobOut(Schema):
    id: int
    asset: int
    state: str
    profile: str
    failure_reason: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    units_total: int
    units_done: int
    units_running: int
    units_failed: int
    progress: float


class UnitOut(Schema):
    id: int
    rendition: str
    chunk: int | None
    state: str
    attempts: int
    wall_s: float | None
    error: str


class UploadIn(Strict):
    filename: str = Field(min_length=1, max_length=1024)
    size: int = Field(gt=0)
    head: str = Field(max_length=4096, description="base64 of the file's first bytes (up to 3 KiB)")
    title: str = Field(default="", max_length=200)
    profile: str | None = Field(default=None, max_length=50)
    content_type: str = Field(default="", max_length=100)
    fingerprint: str = Field(default="", pattern="^([0-9a-f]{64})?$")
    last_modified: int = Field(default=0, ge=0)


class UploadOut(Schema):
    id: str
    state: str
    key: str
    title: str
    profile: str
    size: int
    part_size: int
    parts_total: int
    expires_at: datetime
    resumed: bool = False
    parts_stored: list[dict] = []
    part_urls: dict[str, str] = {}
    asset: int | None = None


class PartsIn(Strict):
    parts: list[int] = Field(min_length=1, max_length=100)


class PartUrlsOut(Schema):
    urls: dict[str, str]
    expires_in: int


class WebhookIn(Strict):
    url: str = Field(min_length=1, max_length=2000)
    description: str = Field(default="", max_length=200)
    events: list[str] | None = Field(default=None, max_length=50)
    signing: str = Field(default="reelflow", pattern="^(reelflow|standard)$")


class WebhookOut(Schema):
    id: int
    url: str
    description: str
    events: list[str]
    state: str
    signing: str
    created_at: datetime
    secret: str | None = None


class TokenOut(Schema):
    name: str
    prefix: str
    scope: str
    publisher: str
    rate_limit_per_minute: int


class ImportIn(Strict):
    url: str = Field(min_length=1, max_length=2000, description="http(s) URL of a video on a public address")
    title: str = Field(default="", max_length=200)
    profile: str | None = Field(default=None, max_length=50)


class ImportOut(Schema):
    id: int
    url: str
    state: str
    failure_reason: str
    size: int | None
    asset: int | None
    created_at: datetime
    finished_at: datetime | None
