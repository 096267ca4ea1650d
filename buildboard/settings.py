"""buildboard settings: one file, read from the environment, with defaults that work on a laptop."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    return os.getenv(name, default).strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.getenv(name, str(default)))


def envfloat(name: str, default: float) -> float:
    return float(os.getenv(name, str(default)))


DEBUG = envbool("DEBUG", "True")
SECRET_KEY = os.getenv("SECRET_KEY", "dev-only-insecure-key-set-SECRET_KEY-in-production")
CSRF_TRUSTED_ORIGINS = [o for o in os.getenv("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
SITE_NAME = os.getenv("SITE_NAME", "buildboard")
SITE_ROOT = os.getenv("SITE_ROOT", "http://localhost:8000").rstrip("/")
# The host of SITE_ROOT unless set; never "*" by default (websocket origins are checked against it too).
# `check --deploy` fails on "*" in production (buildboard/checks.py).
ALLOWED_HOSTS = [h.strip() for h in os.getenv("ALLOWED_HOSTS", urlsplit(SITE_ROOT).hostname or "").split(",")
                 if h.strip()]
if DEBUG and "ALLOWED_HOSTS" not in os.environ:
    ALLOWED_HOSTS += ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.syndication",
    "django_ratelimit",
    "channels",
    "axes",
    "mozilla_django_oidc",
    "accounts",
    "buildboard",
    "jobs",
    "fleet",
    "incidents",
    "devtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "buildboard.lib.errors.JsonErrorsMiddleware",  # every /api/ answer is JSON; transient failures are 503s
    "buildboard.lib.errors.RequestHygieneMiddleware",  # NUL or lone surrogates in the address: 400
    "buildboard.lib.static.StaticFilesMiddleware",
    "buildboard.lib.csp.ContentSecurityPolicyMiddleware",
    "incidents.fastpath.StatusCacheMiddleware",  # cached public status pages, before the costly rest
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # answers locked-out sign-ins (see LOGIN_FAILURE_LIMIT)
]
# The lean chain of Bearer-token requests under /api/v1/ (see buildboard/lib/apichain.py): the same views,
# without sessions, CSRF (the API's operations are token-only and CSRF-exempt), messages, CSP and frame
# options (JSON is no page), static files, the status cache or sign-in lockouts.
API_MIDDLEWARE = [
    "buildboard.lib.apichain.SecurityMiddleware",
    "buildboard.lib.errors.JsonErrorsMiddleware",
    "buildboard.lib.errors.RequestHygieneMiddleware",
    "buildboard.lib.apichain.TokenOnlyMiddleware",
]

ROOT_URLCONF = "buildboard.urls"
ASGI_APPLICATION = "buildboard.asgi.application"

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
                "buildboard.lib.context.site",
            ],
        },
    },
]

# SQLite is the embedded default; production and CI set DATABASE_URL to PostgreSQL.
DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so a Celery worker process in the end-to-end tests sees the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE",
                                       "init_command": "PRAGMA journal_mode=WAL;"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI each request runs in its own thread, so Django's persistent connections would be
    # opened and closed per request; psycopg's pool keeps them open across requests instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # With a pool, this makes psycopg check each connection as it is handed out, so one left broken
    # by a PostgreSQL restart is replaced instead of failing the request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", envint("DB_CONNECT_TIMEOUT", 2))
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": envint("DB_POOL_MIN", 2),
        "max_size": envint("DB_POOL_MAX", 20),
        # How long a request waits for a connection: short, so that while PostgreSQL is unreachable the
        # API answers 503 with Retry-After in well under 2 s instead of hanging.
        "timeout": envfloat("DB_POOL_TIMEOUT", 1.5),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The run and test commands start a private Redis and set REDIS_URL when none is given.
REDIS_URL = os.getenv("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_PREFIX = os.getenv("CHANNEL_PREFIX", "bb")
# Short timeouts: a Redis that is down must turn into a quick 503 or a page served from the database.
REDIS_CONNECT_TIMEOUT = envfloat("REDIS_CONNECT_TIMEOUT", 1.0)
REDIS_SOCKET_TIMEOUT = envfloat("REDIS_SOCKET_TIMEOUT", 5.0)
# Accepted log parts live in Redis until stored: it must persist them (AOF, appendfsync everysec or always).
# require: web and Celery refuse to start without; warn: a loud warning; off: no check (jobs/ingest.py).
REDIS_PERSISTENCE = os.getenv("REDIS_PERSISTENCE", "warn" if DEBUG else "require")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "buildboard.lib.channel_layer.ChannelLayer",  # Redis pub/sub, bounded per consumer
        "CONFIG": {
            "hosts": [REDIS_URL],
            "prefix": f"{CHANNEL_PREFIX}:asgi",
            "capacity": envint("CHANNEL_CAPACITY", 1000),
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "buildboard.lib.cache.RedisCache",  # one connection pool per process (see its module)
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{CHANNEL_PREFIX}:cache",
        "OPTIONS": {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT, "socket_timeout": REDIS_CONNECT_TIMEOUT,
                    "health_check_interval": 30},  # a pooled connection idle that long is checked before use
    }
}

CELERY_BROKER_URL = os.getenv("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = envint("CELERY_PREFETCH", 8)
CELERY_TASK_DEFAULT_QUEUE = f"{CHANNEL_PREFIX}-default"
# A task a dead worker had taken is delivered again after the visibility timeout. Our tasks run for
# seconds (a log flush hands over after 10 s) and retry countdowns stay under 4 minutes, so 5 minutes
# redelivers nothing early; log parts do not wait for it at all (the sweep below reschedules them).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 300,
    "global_keyprefix": f"{CHANNEL_PREFIX}:",
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
}
# Publishing from a request gives up fast, so a view can answer 503 while Redis is down.
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.3}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker waits out a Redis restart rather than exiting

# Log buffers (jobs/ingest.py): a flush owns a job's buffer for a short lease renewed every round; the
# sweep reschedules buffers whose owner died, so after any single fault parts flow again within seconds.
LOG_OWNER_LEASE_SECONDS = envint("LOG_OWNER_LEASE_SECONDS", 10)
LOG_SWEEP_SECONDS = envfloat("LOG_SWEEP_SECONDS", 5)
LOG_BUFFER_MAX_ITEMS = envint("LOG_BUFFER_MAX_ITEMS", 10_000)  # requests waiting per job; beyond: 429
CELERY_BEAT_SCHEDULE: dict = {
    "log-buffer-sweep": {"task": "jobs.tasks.sweep_log_buffers", "schedule": LOG_SWEEP_SECONDS,
                         "options": {"expires": LOG_SWEEP_SECONDS}},
}
# Log archive (jobs/archive.py): a finished attempt's log leaves the database for one compressed object.
# LOG_STORAGE_URL: empty (the default) keeps archives under .data/logs; s3://bucket/prefix uses an
# S3-compatible bucket (AWS_S3_ENDPOINT_URL for one that is not AWS, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_S3_REGION_NAME) through django-storages.
LOG_STORAGE_URL = os.getenv("LOG_STORAGE_URL", "")
LOG_ARCHIVE = envbool("LOG_ARCHIVE", "True")  # False: logs stay in the database (nothing is archived)
LOG_ARCHIVE_GRACE = envint("LOG_ARCHIVE_GRACE", 600)  # seconds after a finish without new parts: complete
LOG_ARCHIVE_SCAN_SECONDS = envfloat("LOG_ARCHIVE_SCAN_SECONDS", 60)
LOG_RETENTION_DAYS = envint("LOG_RETENTION_DAYS", 0)  # archived logs older than this are deleted; 0: kept


def _log_storage(url: str) -> dict:
    from urllib.parse import urlsplit

    if not url:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": os.getenv("LOG_STORAGE_DIR", str(BASE_DIR / ".data" / "logs")),
                            "allow_overwrite": True}}
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"LOG_STORAGE_URL must look like s3://bucket/prefix, not {url!r}")
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": parts.netloc,
        "location": parts.path.strip("/"),
        "endpoint_url": os.getenv("AWS_S3_ENDPOINT_URL") or None,
        "access_key": os.getenv("AWS_ACCESS_KEY_ID") or None,
        "secret_key": os.getenv("AWS_SECRET_ACCESS_KEY") or None,
        "region_name": os.getenv("AWS_S3_REGION_NAME") or os.getenv("AWS_DEFAULT_REGION") or None,
        "file_overwrite": True,
        "default_acl": None,
        "querystring_auth": False,
    }}


LOG_STORAGE = _log_storage(LOG_STORAGE_URL)  # STORAGES["logs"], below
CELERY_BEAT_SCHEDULE["log-archive-scan"] = {"task": "jobs.tasks.archive_scan", "schedule": LOG_ARCHIVE_SCAN_SECONDS,
                                            "options": {"expires": LOG_ARCHIVE_SCAN_SECONDS}}
CELERY_BEAT_SCHEDULE["log-retention"] = {"task": "jobs.tasks.expire_logs", "schedule": 3600.0,
                                         "options": {"expires": 3600.0}}
CELERY_BEAT_SCHEDULE_FILENAME = os.getenv("CELERY_BEAT_SCHEDULE_FILENAME", str(BASE_DIR / ".celerybeat-schedule"))

# Fleet and alerts (fleet/services.py, fleet/alerts.py). Rule thresholds are edited by staff at /alerts/rules/.
FLEET_HEARTBEAT_TIMEOUT = envint("FLEET_HEARTBEAT_TIMEOUT", 90)  # seconds without a heartbeat: silent
FLEET_FORGET_AFTER_HOURS = envint("FLEET_FORGET_AFTER_HOURS", 24)  # then no longer shown
FLEET_ERROR_RETENTION_DAYS = envint("FLEET_ERROR_RETENTION_DAYS", 7)  # error occurrences; signatures stay
ALERTS_EVALUATE_SECONDS = envint("ALERTS_EVALUATE_SECONDS", 30)
ALERT_WEBHOOK_URL = os.getenv("ALERT_WEBHOOK_URL", "")  # Slack-compatible incoming webhook; empty: none
ALERT_EMAIL = envbool("ALERT_EMAIL", "True")  # email active staff with an address
CELERY_BEAT_SCHEDULE["alerts-evaluate"] = {
    "task": "fleet.tasks.alerts_evaluate",
    "schedule": float(ALERTS_EVALUATE_SECONDS),
    # A backlog of evaluations is worthless: each one looks at the present.
    "options": {"expires": float(ALERTS_EVALUATE_SECONDS)},
}
# Staged rollouts (fleet/rollouts.py): default soak per stage, how long a new version's instances may take to
# come into service, how recently a target version must have served to pass preflight, how often gates run.
ROLLOUT_SOAK_MINUTES = envint("ROLLOUT_SOAK_MINUTES", 15)
ROLLOUT_START_MINUTES = envint("ROLLOUT_START_MINUTES", 5)
ROLLOUT_PREFLIGHT_HOURS = envint("ROLLOUT_PREFLIGHT_HOURS", 24)
ROLLOUT_EVALUATE_SECONDS = envint("ROLLOUT_EVALUATE_SECONDS", 30)
CELERY_BEAT_SCHEDULE["rollouts-check"] = {
    "task": "fleet.tasks.rollouts_check",
    "schedule": float(ROLLOUT_EVALUATE_SECONDS),
    "options": {"expires": float(ROLLOUT_EVALUATE_SECONDS)},
}
CELERY_BEAT_SCHEDULE["fleet-prune"] = {"task": "fleet.tasks.fleet_prune", "schedule": 3600.0}

# Status page (incidents/). Pages are cached until something public changes, and at most this long
# (relative times and today's uptime bar move on by themselves).
STATUS_PAGE_ID = os.getenv("STATUS_PAGE_ID", "buildboard00")  # the `page.id` Statuspage clients see
STATUS_PAGE_CACHE_SECONDS = envint("STATUS_PAGE_CACHE_SECONDS", 60)
CELERY_BEAT_SCHEDULE["status-maintenance-transitions"] = {
    "task": "incidents.tasks.transition_maintenance",
    "schedule": 60.0,
    "options": {"expires": 60.0},
}

# The job page's "Jump to first error" looks for the failing fold, else the first line matching this
# (case-insensitive; a repository may set its own).
LOG_ERROR_PATTERN = os.getenv(
    "LOG_ERROR_PATTERN",
    r"\b(?:error|failed|failure|fatal|exception|traceback)\b|^E {3}|The command \".*\" (?:exited with [1-9]|failed)")

# Worker API limits.
LOG_PART_MAX_BYTES = envint("LOG_PART_MAX_BYTES", 1024 * 1024)
LOG_MAX_BYTES = envint("LOG_MAX_BYTES", 16 * 1024 * 1024)
API_MAX_BODY_BYTES = envint("API_MAX_BODY_BYTES", 8 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
API_RETRY_AFTER_SECONDS = envint("API_RETRY_AFTER_SECONDS", 3)  # in 429 and 503 answers

# The public subscription form, per client address (django-ratelimit; behind a proxy set
# RATELIMIT_IP_META_KEY, e.g. HTTP_X_FORWARDED_FOR, so the address is the client's, not the proxy's).
SUBSCRIBE_RATE = os.getenv("SUBSCRIBE_RATE", "10/h")
# django-ratelimit only lists django-redis; Django's own RedisCache increments atomically just the same.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
RATELIMIT_IP_META_KEY = os.getenv("RATELIMIT_IP_META_KEY") or None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Sign-in: local accounts, locked for a while after repeated failures from one address or for one account
# (django-axes, counting in the database so its clock is Django's), and optionally OpenID Connect.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = envint("LOGIN_LOCKOUT_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # either one alone locks
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the lock lifts on time, however often it is tried
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# OpenID Connect single sign-on (mozilla-django-oidc), on when OIDC_RP_CLIENT_ID is set.
OIDC_RP_CLIENT_ID = os.getenv("OIDC_RP_CLIENT_ID", "")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_RP_CLIENT_SECRET = os.getenv("OIDC_RP_CLIENT_SECRET", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.getenv("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.getenv("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.getenv("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.getenv("OIDC_OP_JWKS_ENDPOINT", "")
OIDC_RP_SIGN_ALGO = os.getenv("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.getenv("OIDC_RP_SCOPES", "openid email profile")
OIDC_GROUPS_CLAIM = os.getenv("OIDC_GROUPS_CLAIM", "groups")  # mapped to teams by Team.sso_groups
OIDC_USE_PKCE = True
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("accounts.oidc.Backend")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
    "logs": LOG_STORAGE,
}
WHITENOISE_USE_FINDERS = DEBUG

EMAIL_BACKEND = os.getenv("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "buildboard@localhost")
EMAIL_HOST = os.getenv("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.getenv("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.getenv("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "False")

# Hardening. Production sets DEBUG=False; everything below then defaults to the safe value.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", str(not DEBUG))
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", str(not DEBUG))
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", str(not DEBUG))
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", str(not DEBUG))
# The header only matters once the domain is submitted to the browsers' preload list.
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", str(not DEBUG))
if os.getenv("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (os.environ["SECURE_PROXY_SSL_HEADER"], "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "WARNING")},
}
