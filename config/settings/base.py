"""Settings shared by every environment. The environment is read here and only here.

Every value comes from an environment variable (README lists them all); the defaults are the
ones a developer machine needs, never the ones production may run with (see production.py).
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from core.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("REELFLOW_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-development-key-never-used-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
PORT = env.int("PORT", default=8000)
SITE_URL = env.str("REELFLOW_SITE_URL", default=f"http://127.0.0.1:{PORT}")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[SITE_URL])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_rq",
    "core",
    "pipeline",
    "studio",
    "console",
    "backups",
    "security",
    "webhooks",
    "ops",
    "notifications",
    "delivery",
    "api",
    "ninja",
]

MIDDLEWARE = [
    "core.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite is the embedded default. WAL lets readers run beside the one writer, the busy timeout
# makes several workers wait for the write lock instead of failing, and IMMEDIATE transactions
# take that lock up front so select_for_update-style sections cannot deadlock on upgrade.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: RQ queues, channel layer, cache ------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

RQ_QUEUE_NAMES = [
    "ingest", "publish", "package", "assemble", "encode", "quality", "backup", "security", "webhooks", "default",
]  # fmt: skip
RQ_DEFAULT_TIMEOUT = env.int("RQ_DEFAULT_TIMEOUT", default=3600)
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": RQ_DEFAULT_TIMEOUT} for name in RQ_QUEUE_NAMES
}
# Jobs are enqueued only once the transaction that made them true has committed.
# The worker class every `rqworker` runs (security registration; no fork per job).
# ops' TracedWorker is security's RegisteringWorker with each job's log context (ops/rqworker.py).
RQ_WORKER_CLASS = env.str("REELFLOW_WORKER_CLASS", default="ops.rqworker.TracedWorker")
RQ = {"COMMIT_MODE": "on_db_commit", "WORKER_CLASS": RQ_WORKER_CLASS}
RQ_SHOW_ADMIN_LINK = True

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8's default 5 s socket timeout drops idle websocket groups.
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": env.str("CHANNELS_PREFIX", default="reelflow"),
            "capacity": 1000,
            "expiry": 60,
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_PREFIX", default="reelflow"),
    }
}

# --- S3 ---------------------------------------------------------------------------------------
S3_ENDPOINT_URL = env.str("S3_ENDPOINT_URL", default="http://127.0.0.1:8333")
# The URL browsers and players use; differs from S3_ENDPOINT_URL when S3 sits behind a proxy.
S3_PUBLIC_ENDPOINT_URL = env.str("S3_PUBLIC_ENDPOINT_URL", default=S3_ENDPOINT_URL)
S3_ACCESS_KEY = env.str("S3_ACCESS_KEY", default="")
S3_SECRET_KEY = env.str("S3_SECRET_KEY", default="")
S3_REGION = env.str("S3_REGION", default="us-east-1")
S3_BUCKET_INGEST = env.str("S3_BUCKET_INGEST", default="reelflow-ingest")
S3_BUCKET_MEDIA = env.str("S3_BUCKET_MEDIA", default="reelflow-media")
S3_BUCKET_BACKUP = env.str("S3_BUCKET_BACKUP", default="reelflow-backup")
S3_PRESIGN_SECONDS = env.int("S3_PRESIGN_SECONDS", default=3600)
S3_MAX_ATTEMPTS = env.int("S3_MAX_ATTEMPTS", default=8)
# AWS path for events: S3 notifications delivered to an SQS queue (manage.py consume_s3_events).
SQS_QUEUE_URL = env.str("SQS_QUEUE_URL", default="")
SQS_ENDPOINT_URL = env.str("SQS_ENDPOINT_URL", default="")
# Bearer token the SeaweedFS filer webhook presents to /events/s3/.
S3_EVENTS_TOKEN = env.str("S3_EVENTS_TOKEN", default="")

# --- Media ------------------------------------------------------------------------------------
FFMPEG_BINARY = env.str("FFMPEG_BINARY", default="ffmpeg")
FFPROBE_BINARY = env.str("FFPROBE_BINARY", default="ffprobe")
REELFLOW_CHUNK_SECONDS = env.int("REELFLOW_CHUNK_SECONDS", default=300)
REELFLOW_SEGMENT_SECONDS = env.int("REELFLOW_SEGMENT_SECONDS", default=4)
# Chunks sized to the fleet (pipeline.chunking.plan_for_fleet, docs/pipeline.md): this many
# chunks per encode slot (0: every chunk REELFLOW_CHUNK_SECONDS long, the fixed plan), never
# fewer than REELFLOW_MIN_CHUNK_SEGMENTS segments each, REELFLOW_CHUNK_SECONDS at most. Slots:
# REELFLOW_ENCODE_SLOTS for a fleet that scales out, or 0 to count the encode workers registered.
REELFLOW_CHUNKS_PER_SLOT = env.int("REELFLOW_CHUNKS_PER_SLOT", default=3)
REELFLOW_MIN_CHUNK_SEGMENTS = env.int("REELFLOW_MIN_CHUNK_SEGMENTS", default=3)
REELFLOW_ENCODE_SLOTS = env.int("REELFLOW_ENCODE_SLOTS", default=0)
# The first preview plays the video rung nearest this height from below (the smallest rung if
# none is that low) with the audio; their units are queued ahead of the other rungs
# (pipeline.services.planning.first_playable). 0: no rung ahead (longest first throughout).
REELFLOW_PREVIEW_HEIGHT = env.int("REELFLOW_PREVIEW_HEIGHT", default=360)
# A planned boundary may move this many segments either way to a scene change (0: never, and
# no scene analysis); the analysis gives up after REELFLOW_SCENE_TIMEOUT_S and keeps the plan.
REELFLOW_SCENE_WINDOW_SEGMENTS = env.int("REELFLOW_SCENE_WINDOW_SEGMENTS", default=1)
REELFLOW_SCENE_TIMEOUT_S = env.float("REELFLOW_SCENE_TIMEOUT_S", default=15.0)
REELFLOW_MAX_DURATION_SECONDS = env.int("REELFLOW_MAX_DURATION_SECONDS", default=6 * 3600)
REELFLOW_MAX_PIXELS = env.int("REELFLOW_MAX_PIXELS", default=8192 * 4320)
REELFLOW_MAX_UPLOAD_BYTES = env.int("REELFLOW_MAX_UPLOAD_BYTES", default=50 * 1024**3)
REELFLOW_DEFAULT_PROFILE = env.str("REELFLOW_DEFAULT_PROFILE", default="standard")
# Bounded automatic re-runs: transient unit failures (RQ retries) and invalid outputs.
REELFLOW_UNIT_RETRIES = env.int("REELFLOW_UNIT_RETRIES", default=3)
REELFLOW_PROGRESS_INTERVAL_MS = env.int("REELFLOW_PROGRESS_INTERVAL_MS", default=250)
# Decoded-chunk cache (pipeline.decoded_cache): the first unit of a chunk on a machine keeps the
# chunk's decoded frames so the other rungs skip decoding. Budget in MiB (0: off; in memory at
# most an eighth of the RAM); the folder defaults to /dev/shm/reelflow-decoded-<uid> (memory),
# else the system temp folder.
REELFLOW_DECODED_CACHE_MB = env.int("REELFLOW_DECODED_CACHE_MB", default=4096)
REELFLOW_DECODED_CACHE_DIR = env.str("REELFLOW_DECODED_CACHE_DIR", default="")
REELFLOW_DECODED_CACHE_TTL_S = env.int("REELFLOW_DECODED_CACHE_TTL_S", default=1800)
# A unit whose chunk another unit on the machine is decoding waits for it if that writer will be
# done within this many seconds (0: never wait, decode again).
REELFLOW_DECODED_CACHE_WAIT_S = env.float("REELFLOW_DECODED_CACHE_WAIT_S", default=30.0)
# Threads per unit (decoder, scaler and encoder alike). 0: the machine's CPUs shared among the
# encode workers running on it (2 workers on 2 CPUs: one thread each; one worker on 16 CPUs: 16).
# N: N threads each.
REELFLOW_ENCODER_THREADS = env.int("REELFLOW_ENCODER_THREADS", default=0)

# --- Quality measurement (pipeline.quality, docs/quality.md) --------------------------------
# "always": every video rendition is measured against the source (VMAF where the QC ffmpeg has
# libvmaf, PSNR and SSIM always) on the "quality" queue; "off": nothing is measured.
REELFLOW_QC_MODE = env.str("REELFLOW_QC_MODE", default="always")
if REELFLOW_QC_MODE not in ("always", "off"):
    raise ImproperlyConfigured(f"REELFLOW_QC_MODE must be 'always' or 'off', not {REELFLOW_QC_MODE!r}")
# The ffmpeg that measures. Empty: the imageio-ffmpeg wheel's build (it has libvmaf) when that
# package is installed, else `ffmpeg` on PATH (Debian's has no libvmaf: PSNR and SSIM only).
REELFLOW_QC_FFMPEG = env.str("REELFLOW_QC_FFMPEG", default="")
# Threads per measurement (decoders, scaler, libvmaf). 0: the machine's CPUs shared among the
# encode workers running on it, as for units (2 workers on 2 CPUs: one each).
REELFLOW_QC_THREADS = env.int("REELFLOW_QC_THREADS", default=0)
# Frames scored (docs/quality.md, "Sampling"): every Nth frame of each chunk, N at most
# REELFLOW_QC_FRAME_STEP, sharing no factor with 6 or the GOP, and small enough that a
# rendition gets at least REELFLOW_QC_MIN_FRAMES scored frames (titles too short for a step of
# 5 are measured on every frame). Below 5: every frame of every title.
REELFLOW_QC_FRAME_STEP = env.int("REELFLOW_QC_FRAME_STEP", default=31)
REELFLOW_QC_MIN_FRAMES = env.int("REELFLOW_QC_MIN_FRAMES", default=20)
# Renditions of one chunk measured by one ffmpeg run (the source read once for all of them).
REELFLOW_QC_BATCH = env.int("REELFLOW_QC_BATCH", default=8)

# --- Studio: browser uploads straight to S3, publisher pages ----------------------------------
# Multipart part size (S3 needs at least 5 MiB for every part but the last; raised as needed to
# stay within 10,000 parts) and how many parts a browser sends at once.
STUDIO_UPLOAD_PART_BYTES = env.int("STUDIO_UPLOAD_PART_BYTES", default=16 * 1024**2)
STUDIO_UPLOAD_PARALLEL_PARTS = env.int("STUDIO_UPLOAD_PARALLEL_PARTS", default=4)
STUDIO_UPLOAD_PART_URL_SECONDS = env.int("STUDIO_UPLOAD_PART_URL_SECONDS", default=900)
# An unfinished upload can be resumed this long; then its parts are deleted.
STUDIO_UPLOAD_SESSION_HOURS = env.int("STUDIO_UPLOAD_SESSION_HOURS", default=48)
# Bytes of sources (finished and in flight) each publisher may keep; 0 means no quota.
STUDIO_QUOTA_BYTES = env.int("STUDIO_QUOTA_BYTES", default=0)
# Lifetime of the segment URLs inside playlists (stretched to cover a long video's playback).
STUDIO_PLAYBACK_URL_SECONDS = env.int("STUDIO_PLAYBACK_URL_SECONDS", default=3600)
STUDIO_ASSETS_PER_PAGE = env.int("STUDIO_ASSETS_PER_PAGE", default=20)
# A step started less than this long ago is never judged lost by the reconciler.
REELFLOW_RECONCILE_GRACE_SECONDS = env.int("REELFLOW_RECONCILE_GRACE_SECONDS", default=20)

# --- Operations console (console/, docs/operations.md) ---------------------------------------
CONSOLE_JOBS_PER_PAGE = env.int("CONSOLE_JOBS_PER_PAGE", default=50)
CONSOLE_EVENTS_PER_PAGE = env.int("CONSOLE_EVENTS_PER_PAGE", default=50)

# --- Backups: policies are data (backups.BackupPolicy); these tune how runs move bytes -------
# Parallel S3 transfers per run process (threads; the database is written by one thread only).
BACKUP_COPY_CONCURRENCY = env.int("BACKUP_COPY_CONCURRENCY", default=8)
BACKUP_VERIFY_CONCURRENCY = env.int("BACKUP_VERIFY_CONCURRENCY", default=8)
# Objects up to this size are read into memory and written with one PUT; larger ones stream.
BACKUP_INLINE_MAX_BYTES = env.int("BACKUP_INLINE_MAX_BYTES", default=8 * 1024**2)
BACKUP_PART_BYTES = env.int("BACKUP_PART_BYTES", default=16 * 1024**2)
# A task claimed by a process that stopped heartbeating for this long is taken over.
BACKUP_LEASE_SECONDS = env.int("BACKUP_LEASE_SECONDS", default=600)
BACKUP_TASK_ATTEMPTS = env.int("BACKUP_TASK_ATTEMPTS", default=3)
# Extra RQ jobs that help copy one run's tasks (useful with workers on several machines).
BACKUP_COPY_HELPERS = env.int("BACKUP_COPY_HELPERS", default=0)
BACKUP_PROGRESS_INTERVAL_MS = env.int("BACKUP_PROGRESS_INTERVAL_MS", default=500)
BACKUP_TICK_SECONDS = env.int("BACKUP_TICK_SECONDS", default=30)
# Client-side encryption (docs/backups.md, "Encryption at rest"): the key-encryption key that wraps
# every backup copy's data key, "<id>:<base64 of 32 bytes>" (`manage.py backup_keys --new ID`
# prints one); retired keys stay readable until `backup_keys --rotate` re-wraps their data keys.
BACKUP_KEK = env.str("BACKUP_KEK", default="")
BACKUP_KEKS_RETIRED = env.str("BACKUP_KEKS_RETIRED", default="")
# Restore drills: every this many hours (0: never) each policy restores this many assets to a
# scratch prefix, verifies them and plays their packages (docs/backups.md, "Restore drills").
BACKUP_DRILL_HOURS = env.int("BACKUP_DRILL_HOURS", default=24)
BACKUP_DRILL_ASSETS = env.int("BACKUP_DRILL_ASSETS", default=2)

# --- Webhooks (webhooks/, docs/webhooks.md) --------------------------------------------------
# Refuse endpoints whose host resolves to loopback, private, link-local or other non-public
# addresses (checked on save and again before every attempt). Development and tests allow them.
WEBHOOKS_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOKS_ALLOW_PRIVATE_TARGETS", default=False)
# Deliveries have their own queue and worker process (the Procfile's `control` line): a worker
# busy with a unit finishes it before taking anything else, which held deliveries back ~50 s.
WEBHOOKS_QUEUE = env.str("WEBHOOKS_QUEUE", default="webhooks")
WEBHOOKS_CONNECT_TIMEOUT = env.float("WEBHOOKS_CONNECT_TIMEOUT", default=5.0)
WEBHOOKS_TIMEOUT = env.float("WEBHOOKS_TIMEOUT", default=10.0)  # whole attempt, connect included
# Retries: base * 2^(n-1) seconds (+-20 % jitter), capped, until the window since the event passed.
WEBHOOKS_RETRY_BASE_SECONDS = env.float("WEBHOOKS_RETRY_BASE_SECONDS", default=30.0)
WEBHOOKS_RETRY_MAX_DELAY_SECONDS = env.float("WEBHOOKS_RETRY_MAX_DELAY_SECONDS", default=3600.0)
WEBHOOKS_RETRY_WINDOW_SECONDS = env.int("WEBHOOKS_RETRY_WINDOW_SECONDS", default=24 * 3600)
# An endpoint whose every attempt failed for this long is disabled (0: never).
WEBHOOKS_AUTO_DISABLE_SECONDS = env.int("WEBHOOKS_AUTO_DISABLE_SECONDS", default=3 * 24 * 3600)
WEBHOOKS_MAX_ENDPOINTS = env.int("WEBHOOKS_MAX_ENDPOINTS", default=20)  # per publisher
WEBHOOKS_RETENTION_DAYS = env.int("WEBHOOKS_RETENTION_DAYS", default=30)  # finished deliveries kept
WEBHOOKS_DELIVERIES_PER_PAGE = env.int("WEBHOOKS_DELIVERIES_PER_PAGE", default=50)

# --- Operations telemetry (ops/, docs/operations.md) ----------------------------------------
# Bearer token a Prometheus scraper presents at /metrics (operations users' sessions work too).
# Empty: only sessions.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- Notifications (notifications/, docs/operations.md) -------------------------------------
NOTIFICATIONS_QUEUE = "webhooks"  # the control lane's delivery queue
# A burst of alerts within this many seconds becomes one message per channel.
NOTIFICATIONS_GROUP_SECONDS = env.int("NOTIFICATIONS_GROUP_SECONDS", default=30)
# An alert still open (not acknowledged) is reminded this often.
NOTIFICATIONS_REMINDER_SECONDS = env.int("NOTIFICATIONS_REMINDER_SECONDS", default=4 * 3600)
NOTIFICATIONS_MAX_ATTEMPTS = env.int("NOTIFICATIONS_MAX_ATTEMPTS", default=4)
NOTIFICATIONS_RETRY_SECONDS = [int(s) for s in env.list("NOTIFICATIONS_RETRY_SECONDS", default=["15", "60", "300"])]
NOTIFICATIONS_TIMEOUT = env.float("NOTIFICATIONS_TIMEOUT", default=10.0)
NOTIFICATIONS_EMAIL_FROM = env.str("NOTIFICATIONS_EMAIL_FROM", default="reelflow@localhost")
NOTIFICATIONS_SNS_REGION = env.str("NOTIFICATIONS_SNS_REGION", default="us-east-1")
AWS_ENDPOINT_URL_SNS = env.str("AWS_ENDPOINT_URL_SNS", default="")  # empty: real AWS
# Django's mail (email channels): an SMTP server.
EMAIL_HOST = env.str("EMAIL_HOST", default="127.0.0.1")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = 10
# --- Delivery (delivery/, docs/delivery.md) and API v1 (api/, docs/api.md) ----------------------
# Policy of a new asset's playback URLs: public (anyone with the link), signed (expiring links)
# or private (studio only).
DELIVERY_DEFAULT_POLICY = env.str("DELIVERY_DEFAULT_POLICY", default="signed")
if DELIVERY_DEFAULT_POLICY not in ("public", "signed", "private"):
    raise ImproperlyConfigured("DELIVERY_DEFAULT_POLICY must be public, signed or private.")
# Keys that sign playback tokens, "kid:secret,kid:secret": the first signs, all verify (rotation).
# Empty: one key derived from DJANGO_SECRET_KEY.
DELIVERY_SIGNING_KEYS = env.list("DELIVERY_SIGNING_KEYS", default=[])
for _key in DELIVERY_SIGNING_KEYS:
    _kid, _, _secret = _key.partition(":")
    if not (_kid.isalnum() and _kid.islower() and len(_kid) <= 16 and len(_secret) >= 32):
        raise ImproperlyConfigured("DELIVERY_SIGNING_KEYS: each key is kid:secret (kid a-z0-9, secret 32+ characters)")
# Base lifetime of a signed playback URL (twice the video's duration is added), at most 7 days.
DELIVERY_TOKEN_SECONDS = env.int("DELIVERY_TOKEN_SECONDS", default=6 * 3600)
# Lifetime of the signed playback URLs webhook deliveries carry.
DELIVERY_WEBHOOK_URL_SECONDS = env.int("DELIVERY_WEBHOOK_URL_SECONDS", default=7 * 24 * 3600)
API_RATE_PER_MINUTE = env.int("API_RATE_PER_MINUTE", default=600)  # requests per token per minute
API_MAX_TOKENS = env.int("API_MAX_TOKENS", default=20)  # active tokens per publisher

# --- Auth -------------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the upload page's fetch() reads it to sign its POSTs
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Security (security/, docs/security.md) -------------------------------------------------
# EC2 inventory: empty AWS_REGIONS turns it off. The service-specific endpoint variables are
# boto3's own names, so they never redirect the S3 client; empty means real AWS.
AWS_REGIONS = env.list("AWS_REGIONS", default=[])
AWS_ENDPOINT_URL_EC2 = env.str("AWS_ENDPOINT_URL_EC2", default="")
# Every other AWS service c7n's filters and actions call (CloudWatch, IAM, SSM...): the simulated
# cloud under `make run`; empty: AWS.
AWS_ENDPOINT_URL = env.str("AWS_ENDPOINT_URL", default="")
AWS_ENDPOINT_URL_SQS = env.str("AWS_ENDPOINT_URL_SQS", default="")
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="")  # empty: boto3's default chain
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="")
SECURITY_POLICY_PATHS = env.list("SECURITY_POLICY_PATHS", default=[str(BASE_DIR / "security" / "policies")])
SECURITY_EVENTS_TOKEN = env.str("SECURITY_EVENTS_TOKEN", default="")  # bearer for /security/events/ec2/
SECURITY_SQS_QUEUE_URL = env.str("SECURITY_SQS_QUEUE_URL", default="")
SECURITY_LAUNCH_ALLOWLIST = env.list("SECURITY_LAUNCH_ALLOWLIST", default=[])  # principal ARNs, globs per part
# A RunInstances event whose instance EC2 says launched further than this from the event's time
# is not acted on (alerted instead): it may be forged to stop a long-running instance.
SECURITY_LAUNCH_EVENT_SKEW_SECONDS = env.int("SECURITY_LAUNCH_EVENT_SKEW_SECONDS", default=300)
# An SQS message that failed this many receives goes to the dead-letter record (never loops).
SECURITY_SQS_MAX_RECEIVES = env.int("SECURITY_SQS_MAX_RECEIVES", default=5)
# The account c7n is told it runs in (its ARNs and some filters use it); empty is fine for EC2.
SECURITY_AWS_ACCOUNT_ID = env.str("SECURITY_AWS_ACCOUNT_ID", default="")
SECURITY_ALLOW_TERMINATE = env.bool("SECURITY_ALLOW_TERMINATE", default=False)
SECURITY_ISOLATION_GROUP_NAME = env.str("SECURITY_ISOLATION_GROUP_NAME", default="reelflow-quarantine")
SECURITY_WORKER_TOKEN = env.str("SECURITY_WORKER_TOKEN", default="")  # empty: derived from SECRET_KEY
SECURITY_FLEET_VERSION = env.str("SECURITY_FLEET_VERSION", default="")  # empty: the code's; set at migrate
# 10 s: an instance launched outside the event path is caught within 15 s (bench/lanes.py).
SECURITY_SWEEP_SECONDS = env.int("SECURITY_SWEEP_SECONDS", default=10)
# Lock an account from one address (or one device) after this many failures there.
SECURITY_LOGIN_FAILURES_PER_USER = env.int("SECURITY_LOGIN_FAILURES_PER_USER", default=5)
# Alert when one address has failed this many logins (any accounts); it is slowed down long before.
SECURITY_LOGIN_FAILURES_PER_ADDRESS = env.int("SECURITY_LOGIN_FAILURES_PER_ADDRESS", default=20)
SECURITY_LOGIN_WINDOW_SECONDS = env.int("SECURITY_LOGIN_WINDOW_SECONDS", default=900)
SECURITY_LOGIN_LOCK_SECONDS = env.int("SECURITY_LOGIN_LOCK_SECONDS", default=3600)  # 0: until lifted
# Past this many failures from an address, each attempt waits 1, 2, 4 ... s (at most the max).
SECURITY_LOGIN_SLOWDOWN_AFTER = env.int("SECURITY_LOGIN_SLOWDOWN_AFTER", default=5)
SECURITY_LOGIN_SLOWDOWN_MAX_SECONDS = env.int("SECURITY_LOGIN_SLOWDOWN_MAX_SECONDS", default=60)
# A browser that signed in to an account keeps a signed device cookie this long (its way in).
SECURITY_DEVICE_COOKIE_DAYS = env.int("SECURITY_DEVICE_COOKIE_DAYS", default=180)
SECURITY_PROBE_THRESHOLD = env.int("SECURITY_PROBE_THRESHOLD", default=20)  # distinct ids of one route
SECURITY_PROBE_WINDOW_SECONDS = env.int("SECURITY_PROBE_WINDOW_SECONDS", default=300)
AUTHENTICATION_BACKENDS = ["security.backends.LockoutModelBackend"]
MIDDLEWARE += [
    "security.middleware.DeviceCookieMiddleware",
    "security.middleware.AccessDeniedMiddleware",
    "security.middleware.ContentSecurityPolicyMiddleware",
]
# Origins pages may also load media, images and connections from (a CDN in front of S3, say).
SECURITY_CSP_EXTRA_SOURCES = env.list("SECURITY_CSP_EXTRA_SOURCES", default=[])

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# LOG_FORMAT: "plain" readable lines (make run), "json" one object a line (production's default);
# both carry the request, user, trace, job, unit and RQ ids (core/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL)
