"""Atelier settings: one file, read from the environment.

Defaults suit one person on a laptop (SQLite under var/, a file-system broker, the local demo image
service). Production sets DATABASE_URL, REDIS_URL, OPENAI_API_KEY and turns DEBUG off; see .env.example.
"""

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from importlib.util import find_spec
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from config.env import envbool, envfloat, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = envbool("DEBUG", False)
# `make run`: one person serving the workspace for real on their own machine, as production does
# (gunicorn, DEBUG off) but on loopback over plain HTTP. It allows what only a laptop may have: a secret
# generated into var/, loopback hosts, demo mode by itself without a key, static files served from the
# source folders. Production never sets it.
LOCAL = envbool("ATELIER_LOCAL", False)
LAPTOP = DEBUG or LOCAL

_INSECURE_KEY_PREFIX = "django-insecure"
# Words that mark a value copied from .env.example or a tutorial, not generated: refused in any mode.
_PLACEHOLDER_MARKERS = (
    "change-me",
    "changeme",
    "change_me",
    "replace",
    "placeholder",
    "your-secret",
    "example",
)
SECRET_KEY = envstr("SECRET_KEY")
if any(marker in SECRET_KEY.lower() for marker in _PLACEHOLDER_MARKERS):
    raise ImproperlyConfigured(
        "SECRET_KEY is still a placeholder (it is the .env.example value, or says change-me/replace): set "
        'it to a long random value (python -c "import secrets; print(secrets.token_urlsafe(50))").'
    )
if not SECRET_KEY or SECRET_KEY.startswith(_INSECURE_KEY_PREFIX) or len(SECRET_KEY) < 32:
    if not LAPTOP:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a long random value when DEBUG is off "
            '(python -c "import secrets; print(secrets.token_urlsafe(50))").'
        )
    # A laptop still deserves sessions that survive a restart: keep a generated key under var/.
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(secrets.token_urlsafe(50))
    SECRET_KEY = SECRET_KEY or _key_file.read_text().strip()

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if LAPTOP else [])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
PORT = envint("PORT", 8000, minimum=1)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "template_partials",
    "axes",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "workspace",
]
# Benchmarks, demo data and `make run` live in the dev tools app, which a clone has and the production
# image does not: install it only when it is there.
if find_spec("devtools") is not None:
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    # First: /healthz answers before anything reads the Host header (see workspace/middleware.py).
    "workspace.middleware.HealthCheckMiddleware",
    # Every log line of a request carries its id, echoed in X-Request-ID (workspace/observability.py).
    "workspace.observability.RequestIdMiddleware",
    # Request counts and latencies by view for /metrics: first and last around everything else.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After whitenoise: pages get the policy, static files need none. It keeps a header a view set
    # itself (stored files send their own, stricter one).
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before anything reads request.POST: an oversized body is refused unread (needs the session).
    "workspace.middleware.BoundedRequestMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A database or broker that is away answers 503 "busy", not 500 (workspace/middleware.py).
    "workspace.middleware.BusyMiddleware",
    "workspace.middleware.RefusalMiddleware",
    # Last, as axes asks: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "workspace.context_processors.workspace",
            ],
        },
    }
]

# --- Database -------------------------------------------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'atelier.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=envint("CONN_MAX_AGE", 60, minimum=0), conn_health_checks=True
    )
}
# Which kind of process this is (config/celery.py says "worker" or "beat"; anything else serves web
# requests): it sizes the connection pool below.
PROCESS_ROLE = envstr("ATELIER_PROCESS_ROLE", "web")
# Each process borrows connections from its own bounded pool (psycopg's, through Django) and returns
# them after every request, task and worker step: a worker's threads hold one only while they talk to
# the database, never while they wait on OpenAI. max_size bounds the process whatever the load, so two
# workers (8), three gunicorn processes (4, one per thread) and beat (2) stay near 30 connections. A
# thread that finds the pool empty waits up to the timeout, which also rides out a restarting database;
# then the web answers 503 "busy" and a worker retries the task.
DB_POOL_DEFAULTS = {"web": (4, 5.0), "worker": (8, 30.0), "beat": (2, 10.0)}
_pool_max, _pool_timeout = DB_POOL_DEFAULTS.get(PROCESS_ROLE, DB_POOL_DEFAULTS["web"])
DB_POOL_MAX_SIZE = envint("DB_POOL_MAX_SIZE", _pool_max, minimum=1)
DB_POOL_MIN_SIZE = min(envint("DB_POOL_MIN_SIZE", 1, minimum=0), DB_POOL_MAX_SIZE)
DB_POOL_TIMEOUT = envfloat("DB_POOL_TIMEOUT", _pool_timeout)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The pool needs no extra service (PgBouncer would be one more container to run and watch) and
    # works the same on a laptop; Django requires CONN_MAX_AGE=0 with it: "closing" returns to the pool.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "pool": {"min_size": DB_POOL_MIN_SIZE, "max_size": DB_POOL_MAX_SIZE, "timeout": DB_POOL_TIMEOUT},
            # pg_stat_activity says which kind of process holds each connection.
            "application_name": f"atelier {PROCESS_ROLE}",
        }
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # The web process and a threaded worker write at once: WAL lets readers go on while one writes, and
    # IMMEDIATE transactions queue writers behind the busy timeout instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# django-prometheus's wrappers of the same backends count queries and errors for /metrics.
_engine = DATABASES["default"]["ENGINE"]
if _engine.startswith("django.db.backends."):
    DATABASES["default"]["ENGINE"] = _engine.replace("django.db.backends.", "django_prometheus.db.backends.")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out account or address before any password is hashed.
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, loading each request's user with one statement written once (hot_queries).
    "workspace.auth_backend.SessionUserBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Sign-in throttling (django-axes), on our login page and the admin's alike. After LOGIN_FAILURE_LIMIT
# failures for one username, or from one client address, further tries are refused for
# LOGIN_LOCKOUT_MINUTES (counted again from each refused try); an admin unlocks sooner (README).
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks: per account, per address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "workspace.signin.lockout_response"
# Proxies in front of gunicorn that append the client's address to X-Forwarded-For. 0 (a laptop, or
# gunicorn facing the internet): the header is the client's to write, so only the socket address counts.
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "workspace.signin.client_ip"

LANGUAGE_CODE = "en"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Files ----------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request without it
# No URL serves MEDIA_ROOT: every file goes through a view that checks project membership. MEDIA_URL
# only names a path that nothing routes (Django's test servers need it to be a string).
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
_STATIC_MANIFEST = not LAPTOP and envbool("STATIC_MANIFEST", True)
# Without a collectstatic manifest (laptop, tests) whitenoise serves straight from the source folders.
WHITENOISE_USE_FINDERS = not _STATIC_MANIFEST
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if _STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Media on an S3-compatible bucket (AWS S3, MinIO, R2...) when one is named, so workers on other hosts
# store what the web serves; nothing is then written under MEDIA_ROOT. django-storages reads these names.
AWS_STORAGE_BUCKET_NAME = envstr("AWS_STORAGE_BUCKET_NAME")
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage"}
    AWS_S3_ENDPOINT_URL = envstr("AWS_S3_ENDPOINT_URL") or None  # unset: AWS itself
    AWS_ACCESS_KEY_ID = envstr("AWS_ACCESS_KEY_ID") or None  # unset: boto3's own chain (instance roles)
    AWS_SECRET_ACCESS_KEY = envstr("AWS_SECRET_ACCESS_KEY") or None
    AWS_S3_REGION_NAME = envstr("AWS_S3_REGION_NAME") or None
    AWS_S3_ADDRESSING_STYLE = envstr("AWS_S3_ADDRESSING_STYLE") or None  # MinIO wants "path"
    AWS_S3_SIGNATURE_VERSION = "s3v4"
    # The bucket stays private: objects carry no ACL and every URL is signed and short-lived.
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = True
    AWS_QUERYSTRING_EXPIRE = envint("AWS_QUERYSTRING_EXPIRE", 300, minimum=10)
    # Names carry the job and its attempt (or a row's id), so a name is never reused by another file:
    # overwriting saves the existence check a unique name would cost on every save.
    AWS_S3_FILE_OVERWRITE = True
    # A file opened for reading is downloaded whole; past this size into a temporary file, not memory
    # (a ZIP export of large originals stays bounded).
    AWS_S3_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Members get a bucket file by a redirect to a signed URL (the web tier passes no bytes), once the view
# has checked membership. Off: the web streams it, for a bucket browsers cannot reach (compose's MinIO).
MEDIA_REDIRECT = bool(AWS_STORAGE_BUCKET_NAME) and envbool("MEDIA_REDIRECT", True)

# --- Security (strict whenever DEBUG is off, except for `make run` on loopback) -----------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not LAPTOP)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not LAPTOP)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not LAPTOP)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if LAPTOP else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not LAPTOP)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
if envbool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Only the app's own scripts and styles run: no inline script, style attribute or eval anywhere (htmx
# is told not to inject its indicator style or evaluate filters, see base.html). data: and blob: images
# are the mask painter's canvas export.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- The image service ------------------------------------------------------------------------------
OPENAI_API_KEY = envstr("OPENAI_API_KEY")
OPENAI_BASE_URL = envstr("OPENAI_BASE_URL")
# Demo mode: placeholder images from the stand-in (standin/), not OpenAI. A laptop (DEBUG on) without a
# key gets it by itself and `make run` starts the stand-in; in production it must be asked for, so a
# forgotten key stops the start rather than failing every job five times against a service not running.
DEMO_MODE = envbool("DEMO_MODE", LAPTOP and not OPENAI_API_KEY)
if not DEMO_MODE and not OPENAI_API_KEY:
    raise ImproperlyConfigured(
        "OPENAI_API_KEY is not set. Set it, or set DEMO_MODE=true for placeholder images from the "
        "stand-in image service (with Docker: docker compose --profile demo up -d)."
    )
STANDIN_PORT = envint("STANDIN_PORT", 8765, minimum=1)
# Where demo mode finds the stand-in: `make run` starts it here; compose's demo profile runs it apart.
STANDIN_URL = envstr("STANDIN_URL", f"http://127.0.0.1:{STANDIN_PORT}/v1")
if DEMO_MODE and not OPENAI_BASE_URL:
    OPENAI_BASE_URL = STANDIN_URL

# --- Money ----------------------------------------------------------------------------------------------
# The monthly budget (US dollars) every new project starts with, so a new project is no way around the
# budgets; empty means new projects start without one. Staff change it on the spend dashboard.
_default_project_budget = envstr("DEFAULT_PROJECT_BUDGET").strip()
try:
    DEFAULT_PROJECT_BUDGET = Decimal(_default_project_budget) if _default_project_budget else None
    _budget_ok = DEFAULT_PROJECT_BUDGET is None or (
        DEFAULT_PROJECT_BUDGET.is_finite()
        and 0 <= DEFAULT_PROJECT_BUDGET <= 1_000_000
        and DEFAULT_PROJECT_BUDGET.quantize(Decimal("0.01")) == DEFAULT_PROJECT_BUDGET
    )
except InvalidOperation:
    _budget_ok = False
if not _budget_ok:
    raise ImproperlyConfigured(
        "DEFAULT_PROJECT_BUDGET must be empty or dollars from 0 to 1,000,000 like 50 or 49.99, "
        f"not {_default_project_budget!r}."
    )

# Conversations (workspace.conversations): the Responses API model that reads each message and drives the
# image_generation tool. The image model is the thread's own and is always named in the request.
CONVERSATION_MODEL = envstr("CONVERSATION_MODEL", "gpt-5.5")
# A content provenance check that fails is tried again later (backoff), at most this many times.
PROVENANCE_MAX_ATTEMPTS = envint("PROVENANCE_MAX_ATTEMPTS", 6, minimum=1)
PROVENANCE_RETRY_BASE_SECONDS = envfloat("PROVENANCE_RETRY_BASE_SECONDS", 30.0)
# A pending check still pending this long after its message was due is sent again by beat's sweep.
PROVENANCE_LOST_AFTER_SECONDS = envfloat("PROVENANCE_LOST_AFTER_SECONDS", 600.0)

# One API call may take this long before we give up on it (the SDK's own default is 600 s).
OPENAI_CALL_TIMEOUT = envfloat("OPENAI_CALL_TIMEOUT", 300.0)
# A job's whole life, retries included; each call's timeout is cut to fit what remains.
JOB_DEADLINE_SECONDS = envint("JOB_DEADLINE_SECONDS", 900, minimum=10)
# A campaign's job waits its turn behind the Studio's and the rest of its batch: a day, the same bound
# the overnight lane promises (a 2,000-row batch at 8 calls in flight takes hours, not 15 minutes).
CAMPAIGN_JOB_DEADLINE_SECONDS = envint("CAMPAIGN_JOB_DEADLINE_SECONDS", 86_400, minimum=10)
JOB_MAX_ATTEMPTS = envint("JOB_MAX_ATTEMPTS", 5, minimum=1)
JOB_RETRY_BASE_SECONDS = envfloat("JOB_RETRY_BASE_SECONDS", 2.0)
JOB_RETRY_MAX_SECONDS = envfloat("JOB_RETRY_MAX_SECONDS", 60.0)
# A running job's lease; its worker renews it while the call is in flight, so a killed worker's job
# is noticed by the sweep within a lease, not after the job's whole deadline.
JOB_LEASE_SECONDS = envint("JOB_LEASE_SECONDS", 15, minimum=2)
JOB_LEASE_RENEW_SECONDS = envfloat("JOB_LEASE_RENEW_SECONDS", 5.0)
JOB_SWEEP_SECONDS = envfloat("JOB_SWEEP_SECONDS", 5.0)
# Threads per worker process that store answered images (decode, thumbnail, save), apart from the
# WORKER_CONCURRENCY threads that wait on OpenAI. Pillow releases the GIL, so about one per core.
JOB_FINISH_THREADS = envint("JOB_FINISH_THREADS", 2, minimum=1)
# Connection pools the OpenAI client's connections are split into (see imageapi.ShardedTransport).
OPENAI_CONNECTION_SHARDS = envint("OPENAI_CONNECTION_SHARDS", 8, minimum=1)
# A job due this long with no message in the broker and nothing running anywhere: its message was lost
# (a broker restart), and the sweep wakes workers again. Not a resend timer: a backlog never trips it.
JOB_REQUEUE_AFTER_SECONDS = envint("JOB_REQUEUE_AFTER_SECONDS", 120, minimum=1)
# Fair share (workspace.models.JobQuerySet.claim_next): calls one person may have in flight at once
# (0: no limit), and jobs they may have waiting before the Studio refuses another.
FAIR_SHARE_CALLS_PER_USER = envint("FAIR_SHARE_CALLS_PER_USER", 8, minimum=0)
FAIR_SHARE_QUEUED_PER_USER = envint("FAIR_SHARE_QUEUED_PER_USER", 200, minimum=1)
# The overnight lane (workspace/overnight.py): how often beat sends waiting overnight jobs to OpenAI's
# Batch API and asks about the batches it sent (a batch takes up to 24 h; a minute's delay costs nothing).
OVERNIGHT_POLL_SECONDS = envint("OVERNIGHT_POLL_SECONDS", 60, minimum=1)
THUMBNAIL_MAX_EDGE = 512
# Reference uploads are capped here, by us: Django's upload settings only decide memory versus disk.
REFERENCE_MAX_BYTES = envint("REFERENCE_MAX_BYTES", 50 * 1024 * 1024, minimum=1)
MAX_EDIT_INPUTS = 16

# --- Webhooks (workspace/webhooks.py) ------------------------------------------------------------------
# Endpoints on loopback, private, link-local, multicast or reserved addresses, or on plain HTTP, are
# refused when registered and again at every delivery (after resolving the name). true: allow them
# (a receiver on this machine or the office network; tests).
WEBHOOK_ALLOW_PRIVATE = envbool("WEBHOOK_ALLOW_PRIVATE", False)
# After a secret is rotated, messages are signed with the old secret too for this long.
WEBHOOK_ROTATION_OVERLAP_HOURS = envint("WEBHOOK_ROTATION_OVERLAP_HOURS", 24, minimum=0)
# Seconds one delivery attempt may take (connect, send, first KB of the answer).
WEBHOOK_TIMEOUT_SECONDS = envfloat("WEBHOOK_TIMEOUT_SECONDS", 10.0)
# Seconds to wait before each retry after a failed attempt (then the delivery is marked failed), each
# with jitter: the Standard Webhooks schedule, about 28 hours in all.
WEBHOOK_RETRY_SCHEDULE = [
    float(value)
    for value in envlist("WEBHOOK_RETRY_SCHEDULE", ["5", "300", "1800", "7200", "18000", "36000", "36000"])
]
# A PEM file of extra certificate authorities trusted for HTTPS endpoints (an internal CA), on top of the
# system's; empty: the system's only. The certificate is always verified against the endpoint's name.
WEBHOOK_CA_FILE = envstr("WEBHOOK_CA_FILE")
# Where links in a message point (the images' URLs): this site's address, e.g. https://atelier.example.com.
SITE_URL = envstr("SITE_URL").rstrip("/")

# --- Bounded requests (workspace/middleware.py, workspace/limits.py) ----------------------------------
# Reference files one upload may carry; Django refuses more before reading them (400).
MAX_UPLOAD_FILES = envint("MAX_UPLOAD_FILES", 10, minimum=1)
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_UPLOAD_FILES
# Form fields other than files (a 32,000-character prompt, URL-encoded, is well under this).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
# Each file above this is spooled to a temporary file instead of memory while the body is parsed.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# A whole request body, refused (413) before it is read: small for people not signed in (a login form),
# room for a full upload for those who are.
ANONYMOUS_MAX_REQUEST_BYTES = envint("ANONYMOUS_MAX_REQUEST_BYTES", 64 * 1024, minimum=1024)
MAX_REQUEST_BYTES = envint(
    "MAX_REQUEST_BYTES", REFERENCE_MAX_BYTES * MAX_UPLOAD_FILES + 1024 * 1024, minimum=64 * 1024
)
# Images decoded at once per web process (uploads, masks, conversions): each may hold up to 160 MB.
# A request waits this long for a slot, then gets 503 "busy".
MAX_CONCURRENT_DECODES = envint("MAX_CONCURRENT_DECODES", 2, minimum=1)
DECODE_WAIT_SECONDS = envfloat("DECODE_WAIT_SECONDS", 5.0)
# ZIP downloads streaming at once per web process; each holds a thread for the whole download.
MAX_CONCURRENT_ZIPS = envint("MAX_CONCURRENT_ZIPS", 2, minimum=1)

# --- Cache and sessions ----------------------------------------------------------------------------------
REDIS_URL = envstr("REDIS_URL")
CACHES = {
    "default": (
        {
            "BACKEND": "workspace.redis_cache.RedisCache",  # Django's, reusing its clients
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "atelier",
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Sessions live in the database and are read from the cache: no session query on a busy page or a poll.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- Celery -------------------------------------------------------------------------------------------
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Longer than any countdown we schedule, so a retry waiting in a worker is not delivered twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    # No Redis: a broker on the file system, which web, worker and beat processes can all share.
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_DEFAULT_QUEUE = envstr("CELERY_QUEUE", "atelier")
# Content credential checks (workspace.provenance) have a queue of their own, which every worker also
# consumes: their retries wait as delayed messages, and the sweep reads "messages waiting in the work
# queue" as "job messages on their way", so they must never sit in it.
CELERY_CHECKS_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}-checks"
CELERY_TASK_QUEUES = (
    Queue(CELERY_TASK_DEFAULT_QUEUE, routing_key=CELERY_TASK_DEFAULT_QUEUE),
    Queue(CELERY_CHECKS_QUEUE, routing_key=CELERY_CHECKS_QUEUE),
)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# The job row is the truth and the message only wakes a worker; still, ack late and requeue on a lost
# worker so a crash never silently eats a message.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message waiting per thread: a thread that hands its images to the finisher starts the next call
# at once, instead of waiting for the consumer (one thread, sharing the GIL with all the others) to fetch
# it. A worker killed with messages waiting leaves them queued in the database; the sweep resends them.
CELERY_WORKER_PREFETCH_MULTIPLIER = envint("WORKER_PREFETCH_MULTIPLIER", 2, minimum=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Image calls are waiting, not computing: threads hold many in flight in one process (see README).
CELERY_WORKER_POOL = envstr("WORKER_POOL", "threads")
CELERY_WORKER_CONCURRENCY = envint("WORKER_CONCURRENCY", 32, minimum=1)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes every connection around every task unless told to reuse them; our own
# handlers (config/celery.py) already give a task's connection back to the pool when it ends.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Beat runs the sweep itself, on time whatever the workers' backlog (see config.celery.Scheduler).
CELERY_BEAT_SCHEDULER = "config.celery:Scheduler"
CELERY_BEAT_SCHEDULE = {
    "sweep-jobs": {"task": "workspace.tasks.sweep_jobs", "schedule": JOB_SWEEP_SECONDS},
    # The overnight lane: send waiting overnight jobs as batches, then collect the batches that ended.
    "overnight-dispatch": {"task": "workspace.tasks.overnight_dispatch", "schedule": OVERNIGHT_POLL_SECONDS},
    "overnight-poll": {"task": "workspace.tasks.overnight_poll", "schedule": OVERNIGHT_POLL_SECONDS},
    # Files of images deleted longer ago than the undo window (review.DELETE_UNDO_MINUTES).
    "purge-deleted-images": {"task": "workspace.tasks.purge_deleted_images", "schedule": 180},
    # Webhook deliveries whose retry is due after a long wait, or whose worker died mid-attempt.
    "sweep-webhooks": {"task": "workspace.tasks.sweep_webhooks", "schedule": 60},
    "sweep-credentials": {"task": "workspace.tasks.sweep_credentials", "schedule": 300},
    # Idempotency records past API_IDEMPOTENCY_HOURS (they are ignored already; this keeps the table small).
    "purge-idempotency-keys": {"task": "workspace.tasks.purge_idempotency_keys", "schedule": 3600},
}

# --- The API (/api/v1/, workspace/api/) -------------------------------------------------------------
# Requests a minute per token (per client address without one), counted in the cache (Redis when set).
API_RATE_PER_MINUTE = envint("API_RATE_PER_MINUTE", 120, minimum=1)
# How long an Idempotency-Key's first answer is replayed; beat purges older records.
API_IDEMPOTENCY_HOURS = 24
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["workspace.api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["workspace.api.auth.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "workspace.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Atelier API",
    "DESCRIPTION": "Make and edit images with GPT Image models from scripts. Authenticate with "
    "`Authorization: Bearer atl_…` (make a token on your account page).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
}

# --- Metrics (workspace/observability.py) -------------------------------------------------------------
# /metrics answers staff sessions, and scrapers sending `Authorization: Bearer $METRICS_TOKEN`; anyone
# else gets a 404. Empty: staff only.
METRICS_TOKEN = envstr("METRICS_TOKEN")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters (or empty: staff only).")
# A worker serves its own metrics (queue wait, API calls, spend) on this port; 0: not at all. It has no
# token: bind it where only the scraper reaches (compose: the internal network, no published port).
METRICS_PORT_WORKER = envint("METRICS_PORT_WORKER", 0, minimum=0)
METRICS_ADDR_WORKER = envstr("METRICS_ADDR_WORKER", "127.0.0.1")

# --- Logging ------------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # request= and job= say which request and job a line belongs to ("-": none); a worker's lines for a
    # job carry the id of the request that submitted it (README, "Logs").
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [request=%(request_id)s job=%(job_id)s] %(message)s"
        }
    },
    "filters": {"context": {"()": "workspace.observability.ContextFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx2 logs every request line; the SDK logs options that may carry the key at DEBUG.
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
    },
}
