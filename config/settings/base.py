"""Settings shared by every environment. The environment is read here and only here.

Every value comes from an environment variable (README lists them all); the defaults are the
ones a developer machine needs, never the ones production may run with (see production.py).
"""

from pathlib import Path

import environ

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
]

MIDDLEWARE = [
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

RQ_QUEUE_NAMES = ["ingest", "encode", "assemble", "backup", "security", "default"]
RQ_DEFAULT_TIMEOUT = env.int("RQ_DEFAULT_TIMEOUT", default=3600)
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": RQ_DEFAULT_TIMEOUT} for name in RQ_QUEUE_NAMES
}
# Jobs are enqueued only once the transaction that made them true has committed.
RQ = {"COMMIT_MODE": "on_db_commit"}
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
REELFLOW_MAX_DURATION_SECONDS = env.int("REELFLOW_MAX_DURATION_SECONDS", default=6 * 3600)
REELFLOW_MAX_PIXELS = env.int("REELFLOW_MAX_PIXELS", default=8192 * 4320)
REELFLOW_MAX_UPLOAD_BYTES = env.int("REELFLOW_MAX_UPLOAD_BYTES", default=50 * 1024**3)
REELFLOW_DEFAULT_PROFILE = env.str("REELFLOW_DEFAULT_PROFILE", default="standard")
# Bounded automatic re-runs: transient unit failures (RQ retries) and invalid outputs.
REELFLOW_UNIT_RETRIES = env.int("REELFLOW_UNIT_RETRIES", default=3)
REELFLOW_PROGRESS_INTERVAL_MS = env.int("REELFLOW_PROGRESS_INTERVAL_MS", default=250)
# A step started less than this long ago is never judged lost by the reconciler.
REELFLOW_RECONCILE_GRACE_SECONDS = env.int("REELFLOW_RECONCILE_GRACE_SECONDS", default=20)

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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
