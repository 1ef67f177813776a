"""The encoding pipeline's data: profiles (ladders), assets, jobs, chunks, renditions, units,
artifacts with their lineage, and the object-created events that start it all.

State lives here; Redis only carries queues and progress messages. Transitions are made by
pipeline.services under row locks, never by signals or save().
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class VideoCodec(models.TextChoices):
    H264 = "libx264", "H.264 (x264)"
    H265 = "libx265", "HEVC (x265)"
    VP9 = "libvpx-vp9", "VP9 (libvpx)"
    AV1 = "libsvtav1", "AV1 (SVT-AV1)"


class AudioCodec(models.TextChoices):
    AAC = "aac", "AAC-LC"
    OPUS = "libopus", "Opus"


class Profile(models.Model):
    """An encoding ladder: the renditions every source is encoded into."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class VideoRenditionSpec(models.Model):
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="video_specs")
    name = models.SlugField(max_length=64)
    codec = models.CharField(max_length=16, choices=VideoCodec.choices)
    height = models.PositiveIntegerField()
    crf = models.PositiveSmallIntegerField(null=True, blank=True)
    bitrate_kbps = models.PositiveIntegerField(null=True, blank=True)
    maxrate_kbps = models.PositiveIntegerField(null=True, blank=True)
    bufsize_kbps = models.PositiveIntegerField(null=True, blank=True)
    preset = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["profile", "codec", "height", "name"]
        constraints = [models.UniqueConstraint(fields=["profile", "name"], name="video_spec_unique_name")]

    def __str__(self) -> str:
        return f"{self.profile.slug}/{self.name}"

    def params(self) -> dict:
        return {
            "name": self.name,
            "codec": self.codec,
            "height": self.height,
            "crf": self.crf,
            "bitrate_kbps": self.bitrate_kbps,
            "maxrate_kbps": self.maxrate_kbps,
            "bufsize_kbps": self.bufsize_kbps,
            "preset": self.preset or None,
        }


class AudioRenditionSpec(models.Model):
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="audio_specs")
    name = models.SlugField(max_length=64)
    codec = models.CharField(max_length=16, choices=AudioCodec.choices)
    bitrate_kbps = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField(default=2)

    class Meta:
        ordering = ["profile", "-bitrate_kbps", "name"]
        constraints = [models.UniqueConstraint(fields=["profile", "name"], name="audio_spec_unique_name")]

    def __str__(self) -> str:
        return f"{self.profile.slug}/{self.name}"

    def params(self) -> dict:
        return {"name": self.name, "codec": self.codec, "bitrate_kbps": self.bitrate_kbps, "channels": self.channels}


class AssetState(models.TextChoices):
    PROCESSING = "processing", "Processing"
    HELD = "held", "Held for review"
    READY = "ready", "Ready"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Asset(models.Model):
    """One uploaded source object, owned by one publisher."""

    publisher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assets")
    title = models.CharField(max_length=200)
    source_bucket = models.CharField(max_length=63)
    source_key = models.CharField(max_length=1024)
    source_version = models.CharField(max_length=128, blank=True)
    source_size = models.BigIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=AssetState.choices, default=AssetState.PROCESSING)
    duration_s = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    probe = models.JSONField(default=dict, blank=True)
    poster_key = models.CharField(max_length=1024, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["publisher", "-created_at"])]

    def __str__(self) -> str:
        return self.title


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROBING = "probing", "Probing"
    ENCODING = "encoding", "Encoding"
    PACKAGING = "packaging", "Packaging"
    PUBLISHED = "published", "Published"
    CHECKING = "checking", "Checking rules"
    PUBLISHING = "publishing", "Publishing"
    HELD = "held_for_review", "Held for review"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


JOB_FINAL_STATES = {JobState.PUBLISHED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED}


class EncodeJob(models.Model):
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="jobs")
    profile = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="jobs")
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.QUEUED)
    chunk_seconds = models.PositiveIntegerField()  # the upper bound of a chunk's length
    segment_seconds = models.PositiveIntegerField()
    # Why the chunks are where they are (pipeline.steps.probe): the plan's inputs, the chunk
    # length chosen, and per boundary where it was planned, where it is and why.
    chunk_plan = models.JSONField(default=dict, blank=True)
    priority = models.SmallIntegerField(default=0)
    failure_reason = models.TextField(blank=True)
    output_prefix = models.CharField(max_length=512, blank=True)
    master_playlist_key = models.CharField(max_length=1024, blank=True)
    dash_manifest_key = models.CharField(max_length=1024, blank=True)
    # HLS over the renditions ready so far, while the job still encodes (steps/preview.py).
    preview_key = models.CharField(max_length=1024, blank=True)
    # Where the package was promoted when the job was published (the stable, public-facing copy).
    published_prefix = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "-created_at"]),
            models.Index(fields=["created_at", "id"], name="job_created_id_idx"),
            # /metrics counts jobs by state and profile from this index alone (24 -> 1.4 ms at
            # 10,000 jobs on SQLite: without it every job row is read).
            models.Index(fields=["state", "profile"], name="job_state_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in JOB_FINAL_STATES


class Chunk(models.Model):
    job = models.ForeignKey(EncodeJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    start_s = models.FloatField()
    end_s = models.FloatField()
    start_frame = models.PositiveIntegerField()
    frame_count = models.PositiveIntegerField()

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="chunk_unique_index")]

    def __str__(self) -> str:
        return f"chunk {self.index} of job {self.job_id}"


class RenditionKind(models.TextChoices):
    VIDEO = "video", "Video"
    AUDIO = "audio", "Audio"


class RenditionState(models.TextChoices):
    ENCODING = "encoding", "Encoding"
    ASSEMBLING = "assembling", "Assembling"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Rendition(models.Model):
    """One output stream of one job; `params` is the spec as it was when the job planned it."""

    job = models.ForeignKey(EncodeJob, on_delete=models.CASCADE, related_name="renditions")
    kind = models.CharField(max_length=8, choices=RenditionKind.choices)
    name = models.SlugField(max_length=64)
    params = models.JSONField(default=dict)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=RenditionState.choices, default=RenditionState.ENCODING)
    units_total = models.PositiveIntegerField(default=0)
    units_done = models.PositiveIntegerField(default=0)
    output_key = models.CharField(max_length=1024, blank=True)
    frame_count = models.PositiveIntegerField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    bitrate_kbps = models.PositiveIntegerField(null=True, blank=True)
    codecs = models.CharField(max_length=64, blank=True)
    failure_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "kind", "-height", "name"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="rendition_unique_name")]

    def __str__(self) -> str:
        return f"{self.job_id}/{self.name}"


class UnitState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Unit(models.Model):
    """One (chunk, rendition) encode, or one whole-file audio encode (chunk is null)."""

    job = models.ForeignKey(EncodeJob, on_delete=models.CASCADE, related_name="units")
    rendition = models.ForeignKey(Rendition, on_delete=models.CASCADE, related_name="units")
    chunk = models.ForeignKey(Chunk, null=True, blank=True, on_delete=models.CASCADE, related_name="units")
    state = models.CharField(max_length=16, choices=UnitState.choices, default=UnitState.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Relative cost (output pixels × frames × codec factor): units are queued costliest first.
    cost = models.FloatField(default=0)
    output_key = models.CharField(max_length=1024)
    rq_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    wall_s = models.FloatField(null=True, blank=True)
    ffmpeg_s = models.FloatField(null=True, blank=True)
    cpu_s = models.FloatField(null=True, blank=True)
    frames = models.PositiveIntegerField(null=True, blank=True)
    command = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "rendition", "chunk__index"]
        indexes = [
            models.Index(fields=["job", "state"]),
            models.Index(fields=["state", "started_at"]),
            models.Index(fields=["state", "finished_at"], name="unit_state_finished_idx"),
            models.Index(fields=["rq_id"], name="unit_rq_idx"),
            models.Index(fields=["worker", "state"], name="unit_worker_state_idx"),
        ]

    def __str__(self) -> str:
        return f"unit {self.pk} ({self.state})"


class Artifact(models.Model):
    """Something a step wrote to S3, with what it was made from (lineage)."""

    class Kind(models.TextChoices):
        UNIT = "unit", "Unit output"
        RENDITION = "rendition", "Joined rendition"
        AUDIO = "audio", "Audio rendition"
        PACKAGE = "package", "HLS/DASH package"
        POSTER = "poster", "Poster"
        SPRITE = "sprite", "Thumbnail sprite"
        QC = "qc", "Quality measurement"
        PUBLISHED = "published", "Published package"

    job = models.ForeignKey(EncodeJob, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    size = models.BigIntegerField(null=True, blank=True)
    step = models.CharField(max_length=64)
    inputs = models.JSONField(default=dict)
    parents = models.ManyToManyField("self", symmetrical=False, related_name="children", blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "id"]
        constraints = [models.UniqueConstraint(fields=["bucket", "key"], name="artifact_unique_key")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class IngestEvent(models.Model):
    """An announcement that an object was created; the dedup key makes replays harmless."""

    class Source(models.TextChoices):
        FILER = "filer", "SeaweedFS filer webhook"
        SQS = "sqs", "S3 notification via SQS"
        SWEEP = "sweep", "Reconcile sweep"
        CLI = "cli", "Command line"
        STUDIO = "studio", "Studio upload"

    dedup_key = models.CharField(max_length=400, unique=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    version = models.CharField(max_length=128, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    job = models.ForeignKey(EncodeJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.source} {self.bucket}/{self.key}"


# --- Publish rules ---------------------------------------------------------------------------


class RuleSet(models.Model):
    """Rules a packaged job must pass to be published. A set applies to every job when it is
    the default, and otherwise to the jobs of the profiles and publishers it is attached to."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False, help_text="Applies to every job.")
    profiles = models.ManyToManyField(Profile, blank=True, related_name="rule_sets")
    publishers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="rule_sets")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RuleKind(models.TextChoices):
    RENDITIONS_VALID = "renditions_valid", "Every rendition valid"
    QUALITY_MIN = "quality_min", "Minimum quality"
    DURATION_MATCH = "duration_match", "Duration matches the source"
    BITRATE_CAP = "bitrate_cap", "No rendition above its bitrate cap"
    PUBLISHER_VERIFIED = "publisher_verified", "Publisher is verified"


class QualityMetric(models.TextChoices):
    VMAF = "vmaf", "VMAF"
    PSNR = "psnr", "PSNR (dB)"
    SSIM = "ssim", "SSIM"


class QualityStatistic(models.TextChoices):
    MEAN = "mean", "mean"
    P5 = "p5", "5th percentile"


DEFAULT_DURATION_TOLERANCE_FRAMES = 1.0
DEFAULT_BITRATE_TOLERANCE_PCT = 5.0
METRIC_UNIT = {QualityMetric.VMAF: "", QualityMetric.PSNR: " dB", QualityMetric.SSIM: ""}


def fmt_value(value: float | None, metric: str = "") -> str:
    if value is None:
        return "?"
    if metric == QualityMetric.SSIM:
        return f"{value:.4f}"
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def _metric_phrase(metric: str, statistic: str, threshold: float | None) -> str:
    name = QualityMetric(metric).label.split(" ")[0] if metric else "?"
    stat = "mean" if statistic == QualityStatistic.MEAN else "5th percentile"
    return f"{name} {stat} ≥ {fmt_value(threshold, metric)}{METRIC_UNIT.get(metric, '')}"


def _rule_label(rule: "Rule") -> str:
    kind = rule.kind
    if kind == RuleKind.QUALITY_MIN:
        text = _metric_phrase(rule.metric, rule.statistic, rule.threshold)
        if rule.min_height:
            text += f" for rungs ≥ {rule.min_height}p"
        if rule.fallback_metric:
            text += f" (else {_metric_phrase(rule.fallback_metric, rule.statistic, rule.fallback_threshold)})"
        return text
    if kind == RuleKind.DURATION_MATCH:
        frames = rule.tolerance if rule.tolerance is not None else DEFAULT_DURATION_TOLERANCE_FRAMES
        return f"Duration within {frames:g} frame{'s' if frames != 1 else ''} of the source"
    if kind == RuleKind.BITRATE_CAP:
        pct = rule.tolerance if rule.tolerance is not None else DEFAULT_BITRATE_TOLERANCE_PCT
        return "No rendition above its bitrate cap" + (f" (+{pct:g}% tolerated)" if pct else "")
    return RuleKind(kind).label


class Rule(models.Model):
    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=24, choices=RuleKind.choices)
    enabled = models.BooleanField(default=True)
    # quality_min: metric [statistic] >= threshold for rungs of at least min_height; when the
    # metric was not measured (no libvmaf), the fallback metric and threshold apply.
    metric = models.CharField(max_length=8, choices=QualityMetric.choices, blank=True)
    statistic = models.CharField(max_length=8, choices=QualityStatistic.choices, default=QualityStatistic.MEAN)
    threshold = models.FloatField(null=True, blank=True)
    fallback_metric = models.CharField(max_length=8, choices=QualityMetric.choices, blank=True)
    fallback_threshold = models.FloatField(null=True, blank=True)
    min_height = models.PositiveIntegerField(null=True, blank=True)
    # duration_match: frames of tolerance; bitrate_cap: percent over the cap tolerated.
    tolerance = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["rule_set", "id"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """The rule in words, with its thresholds: how pages, events and evaluations name it."""
        return _rule_label(self)


class RuleEvaluation(models.Model):
    """One evaluation of a job against its rules; `results` lists each rule's outcome:
    {"rule": id, "rule_set": name, "label": str, "passed": bool, "measured": str, "detail": str}."""

    job = models.ForeignKey(EncodeJob, on_delete=models.CASCADE, related_name="evaluations")
    passed = models.BooleanField()
    results = models.JSONField(default=list)
    rule_sets = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"evaluation of job {self.job_id}: {'pass' if self.passed else 'fail'}"

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.results if not r.get("passed")]


class Review(models.Model):
    """An operator's decision on a job held for review."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approved (published anyway)"
        REJECT = "reject", "Rejected"

    job = models.ForeignKey(EncodeJob, on_delete=models.CASCADE, related_name="reviews")
    evaluation = models.ForeignKey(RuleEvaluation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    reason = models.TextField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "-created_at"]

    def __str__(self) -> str:
        return f"{self.decision} job {self.job_id}"


# --- Quality measurement (pipeline.quality, docs/quality.md) ----------------------------------


class QualityState(models.TextChoices):
    """A job's or a rendition's measurement as a whole."""

    OFF = "off", "Off"
    PENDING = "pending", "Measuring"
    DONE = "done", "Measured"
    FAILED = "failed", "Failed"


class QualityTaskState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class JobQuality(models.Model):
    """Whether a job's renditions are measured, and how far that got. Created when its first
    video rendition is ready; its row lock is the fan-in point of the job's measurements."""

    job = models.OneToOneField(EncodeJob, on_delete=models.CASCADE, related_name="quality")
    state = models.CharField(max_length=16, choices=QualityState.choices, default=QualityState.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"quality of job {self.job_id} ({self.state})"


class RenditionQuality(models.Model):
    """Whole-rendition scores, aggregated over every frame of every chunk once the last chunk
    is measured. `scores` maps each metric measured on every chunk to {"mean", "p5", "min"}."""

    rendition = models.OneToOneField(Rendition, on_delete=models.CASCADE, related_name="quality")
    job = models.ForeignKey(EncodeJob, on_delete=models.CASCADE, related_name="rendition_qualities")
    state = models.CharField(max_length=16, choices=QualityState.choices, default=QualityState.PENDING)
    scores = models.JSONField(default=dict, blank=True)
    frames = models.PositiveIntegerField(null=True, blank=True)
    compared_width = models.PositiveIntegerField(null=True, blank=True)
    compared_height = models.PositiveIntegerField(null=True, blank=True)
    tool = models.CharField(max_length=300, blank=True)
    measured_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"quality of {self.rendition_id} ({self.state})"


class QualityTask(models.Model):
    """One measurement: one chunk of one video rendition against the same frames of the source.

    `scores` maps each metric to {"mean", "p5", "min"} over the chunk's frames; `frame_scores`
    keeps every frame's value (base64 of float32, pipeline.quality.metrics.frames_pack) so the
    whole rendition's percentiles come from all its frames, not from per-chunk summaries.
    """

    job = models.ForeignKey(EncodeJob, on_delete=models.CASCADE, related_name="quality_tasks")
    rendition = models.ForeignKey(Rendition, on_delete=models.CASCADE, related_name="quality_tasks")
    chunk = models.ForeignKey(Chunk, on_delete=models.CASCADE, related_name="quality_tasks")
    state = models.CharField(max_length=16, choices=QualityTaskState.choices, default=QualityTaskState.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    rq_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    frame_scores = models.JSONField(default=dict, blank=True)
    frames = models.PositiveIntegerField(null=True, blank=True)
    compared_width = models.PositiveIntegerField(null=True, blank=True)
    compared_height = models.PositiveIntegerField(null=True, blank=True)
    tool = models.CharField(max_length=300, blank=True)
    command = models.TextField(blank=True)
    error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    wall_s = models.FloatField(null=True, blank=True)
    cpu_s = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["job", "rendition", "chunk__index"]
        constraints = [models.UniqueConstraint(fields=["rendition", "chunk"], name="quality_task_unique_chunk")]
        indexes = [
            models.Index(fields=["job", "state"], name="quality_task_job_state_idx"),
            models.Index(fields=["state", "queued_at"], name="quality_task_state_idx"),
        ]

    def __str__(self) -> str:
        return f"quality task {self.pk} ({self.state})"
