"""Atelier settings: one file, read from the environment.

Defaults suit one person on a laptop (SQLite under var/, a file-system broker, the local demo image
service). Production sets DATABASE_URL, REDIS_URL, OPENAI_API_KEY and turns DEBUG off; see .env.example.
"""

from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import envbool, envfloat, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = envbool("DEBUG", False)

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
    if not DEBUG:
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

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
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
    "workspace",
]
# Benchmarks, demo data and `make run` live in the dev tools app, which a clone has and the production
# image does not: install it only when it is there.
if find_spec("devtools") is not None:
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    # First: /healthz answers before anything reads the Host header (see workspace/middleware.py).
    "workspace.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After whitenoise: pages get the policy, static files need none. It keeps a header a view set
    # itself (stored files send their own, stricter one).
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as axes asks: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
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
_STATIC_MANIFEST = not DEBUG and envbool("STATIC_MANIFEST", True)
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

# --- Security (strict whenever DEBUG is off) --------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
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
DEMO_MODE = envbool("DEMO_MODE", DEBUG and not OPENAI_API_KEY)
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

# One API call may take this long before we give up on it (the SDK's own default is 600 s).
OPENAI_CALL_TIMEOUT = envfloat("OPENAI_CALL_TIMEOUT", 300.0)
# A job's whole life, retries included; each call's timeout is cut to fit what remains.
JOB_DEADLINE_SECONDS = envint("JOB_DEADLINE_SECONDS", 900, minimum=10)
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
# A queued job whose message has not been picked up in this long is sent again (a lost message).
JOB_REQUEUE_AFTER_SECONDS = envint("JOB_REQUEUE_AFTER_SECONDS", 120, minimum=1)
THUMBNAIL_MAX_EDGE = 512
# Reference uploads are capped here, by us: Django's upload settings only decide memory versus disk.
REFERENCE_MAX_BYTES = envint("REFERENCE_MAX_BYTES", 50 * 1024 * 1024, minimum=1)
MAX_EDIT_INPUTS = 16

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
# Celery's Django fixup closes every connection around every task unless told to reuse them; we keep
# them (CONN_MAX_AGE and health checks still apply, see config/celery.py): ~4 ms less a job.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sweep-jobs": {"task": "workspace.tasks.sweep_jobs", "schedule": JOB_SWEEP_SECONDS},
}

# --- Logging ------------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx2 logs every request line; the SDK logs options that may carry the key at DEBUG.
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
    },
}
