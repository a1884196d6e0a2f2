"""Settings, all from the environment (see .env.example). Defaults are the embedded demo set-up."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# The embedded default gets a fixed dev key; any real deployment sets SECRET_KEY.
SECRET_KEY = env.str("SECRET_KEY", default="fleet-embedded-insecure-dev-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
DATA_DIR = Path(env.str("FLEET_DATA_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_tables2",
    "csp",
    "fleet",
    "accounts",
    "devices",
    "ota",
    "telemetry",
    "demo",
]

MIDDLEWARE = [
    "fleet.observability.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "fleet.api.parsers.UnstorableQueryMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "fleet.urls"
WSGI_APPLICATION = "fleet.wsgi.application"
ASGI_APPLICATION = "fleet.asgi.application"

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
                "fleet.web.context.ui",
            ]
        },
    }
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'fleet.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the demo's web, ingest and worker threads read while one writes.
    # IMMEDIATE: a transaction takes the write lock when it begins, so a read that turns into a write
    # waits for the lock (up to timeout) instead of failing at once with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://fleet")}

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
CSRF_FAILURE_VIEW = "fleet.views.csrf_failure"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
WHITENOISE_USE_FINDERS = True  # the demo serves static files without collectstatic

# Request bodies: the API takes small JSON documents; model artifacts go through their own upload path.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.RolePermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
    ],
    "DEFAULT_PAGINATION_CLASS": "fleet.api.pagination.IdCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "user": env.str("THROTTLE_USER", default="1200/min"),
        "enroll": env.str("THROTTLE_ENROLL", default="30/min"),
        "login": env.str("THROTTLE_LOGIN", default="10/min"),
    },
    "EXCEPTION_HANDLER": "fleet.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_PARSER_CLASSES": ["fleet.api.parsers.StrictJSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Fleet API",
    "DESCRIPTION": "REST automation API v1 for the Fleet edge camera platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Tags and operation ids from the resource, not the version ("devices_list", not "v1_devices_list"):
    # what generated clients name their modules and functions after (docs/automation.md).
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "fleet.api.schema.add_error_responses",
    ],
}

# API tokens: a new token lives this many days unless the caller asks for less (0 = never expires).
API_TOKEN_DEFAULT_DAYS = env.int("API_TOKEN_DEFAULT_DAYS", default=90)

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="cache+memory://")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=CELERY_BROKER_URL == "memory://")
CELERY_BEAT_SCHEDULE: dict = {}
# Several Fleet installations on one RabbitMQ vhost or Redis database keep apart by these names:
# the queue tasks go to, and the exchange workers answer control commands (ping) on.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_CONTROL_EXCHANGE = env.str("CELERY_CONTROL_EXCHANGE", default="celery")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# /readyz asks the workers for a ping and waits this long for the first answer.
READINESS_CELERY_TIMEOUT_S = env.float("READINESS_CELERY_TIMEOUT_S", default=1.0)

# Readiness checks reported by /readyz: name -> dotted path of a callable that raises when its
# dependency is down (what it returns is shown as the check's detail).
READINESS_CHECKS = {"database": "fleet.health.check_database", "celery": "fleet.health.check_celery"}

LOG_FORMAT = env.str("LOG_FORMAT", default="console")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structlog": {"()": "fleet.logging.formatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structlog"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# The URL devices and API clients use to reach this server (enrollment answers, signed upload URLs).
PUBLIC_URL = env.str("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- web UI ---
# Cookies only over HTTPS where the server is reached over TLS (PUBLIC_URL https://...).
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=PUBLIC_URL.startswith("https://"))
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=SESSION_COOKIE_SECURE)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)
# Failed logins allowed per user name and per client address within the window, then refused.
LOGIN_FAILURES_MAX = env.int("LOGIN_FAILURES_MAX", default=10)
LOGIN_FAILURES_WINDOW_S = env.int("LOGIN_FAILURES_WINDOW_S", default=15 * 60)
DJANGO_TABLES2_TEMPLATE = "tables/table.html"
# Dashboard "cameras with problems": offline longer than this, this hot, this many items queued.
DASHBOARD_OFFLINE_AFTER_S = env.int("DASHBOARD_OFFLINE_AFTER_S", default=3600)
DASHBOARD_HOT_C = env.float("DASHBOARD_HOT_C", default=80.0)
DASHBOARD_BACKLOG_ITEMS = env.int("DASHBOARD_BACKLOG_ITEMS", default=100)
# No inline script or style anywhere: every asset is a file under static/ (htmx from django-htmx).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "media-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# PKI: the device CA and the server's own MQTT identities live here (see docs/security.md).
PKI_DIR = Path(env.str("PKI_DIR", default=str(DATA_DIR / "pki")))
# Encrypts the CA private key at rest. The embedded default derives one; production must set it.
PKI_CA_PASSPHRASE = env.str("PKI_CA_PASSPHRASE", default="fleet-embedded-ca-passphrase")
DEVICE_CERT_LIFETIME_HOURS = env.int("DEVICE_CERT_LIFETIME_HOURS", default=24 * 30)

# MQTT: the broker as the server sees it (its own mTLS listener) and as devices see it.
MQTT_HOST = env.str("MQTT_HOST", default="127.0.0.1")
MQTT_PORT = env.int("MQTT_PORT", default=8884)
MQTT_DEVICE_HOST = env.str("MQTT_DEVICE_HOST", default="127.0.0.1")
MQTT_DEVICE_PORT = env.int("MQTT_DEVICE_PORT", default=8883)
MQTT_TLS = env.bool("MQTT_TLS", default=True)
MQTT_CA_FILE = env.str("MQTT_CA_FILE", default=str(PKI_DIR / "ca.crt"))
MQTT_CLIENT_CERT = env.str("MQTT_CLIENT_CERT", default=str(PKI_DIR / "fleet-ingest.crt"))
MQTT_CLIENT_KEY = env.str("MQTT_CLIENT_KEY", default=str(PKI_DIR / "fleet-ingest.key"))
# "embedded" runs the amqtt broker inside `manage.py demo`; "mosquitto" expects an external broker.
MQTT_BROKER = env.str("MQTT_BROKER", default="embedded")

# Object store: "local" keeps files under MEDIA_ROOT behind signed Django URLs; "s3" uses boto3.
STORAGE_BACKEND = env.str("STORAGE_BACKEND", default="local")
S3_ENDPOINT_URL = env.str("S3_ENDPOINT_URL", default="")
S3_BUCKET = env.str("S3_BUCKET", default="fleet")
S3_ACCESS_KEY_ID = env.str("S3_ACCESS_KEY_ID", default="")
S3_SECRET_ACCESS_KEY = env.str("S3_SECRET_ACCESS_KEY", default="")
S3_REGION = env.str("S3_REGION", default="us-east-1")
if STORAGE_BACKEND == "s3" and S3_ENDPOINT_URL:
    # Snapshots and clips are shown from presigned object-store URLs.
    for _directive in ("img-src", "media-src"):
        CONTENT_SECURITY_POLICY["DIRECTIVES"][_directive].append(S3_ENDPOINT_URL.rstrip("/"))

# --- storage ---
READINESS_CHECKS["storage"] = "fleet.storage.check_storage"

# --- ota ---
# Encrypts OTA release private keys at rest. The embedded default has a fixed one; production sets it.
OTA_KEY_PASSPHRASE = env.str("OTA_KEY_PASSPHRASE", default="fleet-embedded-ota-passphrase")
OTA_KEYLIST_EXPIRY_DAYS = env.int("OTA_KEYLIST_EXPIRY_DAYS", default=365)
OTA_RELEASE_EXPIRY_DAYS = env.int("OTA_RELEASE_EXPIRY_DAYS", default=180)
# Presigned artifact URLs in down/ota offers; re-issued when a device comes back online.
OTA_ARTIFACT_URL_TTL_S = env.int("OTA_ARTIFACT_URL_TTL_S", default=24 * 3600)
OTA_ARTIFACT_MAX_BYTES = env.int("OTA_ARTIFACT_MAX_BYTES", default=2 * 1024**3)
# A device seen this recently counts as online: its update timeout starts when the offer is sent.
OTA_ONLINE_WINDOW_S = env.int("OTA_ONLINE_WINDOW_S", default=300)
OTA_TICK_S = env.float("OTA_TICK_S", default=5.0)
CELERY_BEAT_SCHEDULE["ota-rollout-tick"] = {"task": "ota.tasks.rollout_tick", "schedule": OTA_TICK_S}

# --- telemetry ingest ---
# MQTT protocol of server connections: "auto" tries 5 then 3.1.1 (the embedded broker), or "5" / "3.1.1".
MQTT_PROTOCOL = env.str("MQTT_PROTOCOL", default="auto")
MQTT_KEEPALIVE_S = env.int("MQTT_KEEPALIVE_S", default=30)
MQTT_PUBLISH_TIMEOUT_S = env.float("MQTT_PUBLISH_TIMEOUT_S", default=5.0)
# Stable per replica (a StatefulSet name, a host name): its persistent broker session holds the
# messages that arrive while it restarts. Empty: fleet-ingest-<hostname>.
INGEST_CLIENT_ID = env.str("INGEST_CLIENT_ID", default="")
# MQTT 5 shared subscription ($share/<group>/...) so replicas split the load. Mosquitto 2.0.11 does not
# restore a shared subscription from persistence: after a broker restart, messages published before the
# ingest resubscribes are dropped. A single replica that must survive broker restarts losslessly: false.
INGEST_SHARED_SUBSCRIPTION = env.bool("INGEST_SHARED_SUBSCRIPTION", default=True)
INGEST_SHARE_GROUP = env.str("INGEST_SHARE_GROUP", default="ingest")
INGEST_SESSION_EXPIRY_S = env.int("INGEST_SESSION_EXPIRY_S", default=7 * 24 * 3600)
# A batch closes at this many messages or this many ms after its first message.
INGEST_BATCH_MAX = env.int("INGEST_BATCH_MAX", default=1000)
INGEST_BATCH_MS = env.int("INGEST_BATCH_MS", default=100)
# Unacknowledged messages the broker may have in flight to one ingest (MQTT 5 Receive Maximum).
# Room for the batch being collected while two are committed (INGEST_COMMIT_PROCESS).
INGEST_RECEIVE_MAXIMUM = env.int("INGEST_RECEIVE_MAXIMUM", default=3 * INGEST_BATCH_MAX)
# Commit in a child process, so that receiving and committing each have a core (false: one process).
INGEST_COMMIT_PROCESS = env.bool("INGEST_COMMIT_PROCESS", default=True)
# Device.last_seen_at is rewritten only when it is older than this (one UPDATE per device per window).
INGEST_SEEN_RESOLUTION_S = env.int("INGEST_SEEN_RESOLUTION_S", default=15)
# A device clock further off than this (no RTC: 1970) is corrected with the receive time.
INGEST_CLOCK_SKEW_S = env.int("INGEST_CLOCK_SKEW_S", default=300)
INGEST_METRICS_PORT = env.int("INGEST_METRICS_PORT", default=9108)
INGEST_PROCESSED_RETENTION_DAYS = env.int("INGEST_PROCESSED_RETENTION_DAYS", default=7)
DEAD_LETTER_RETENTION_DAYS = env.int("DEAD_LETTER_RETENTION_DAYS", default=30)
# A device silent for longer than this is marked offline (reason "silent") by the sweep.
STATUS_SILENT_AFTER_S = env.int("STATUS_SILENT_AFTER_S", default=300)
STATUS_SWEEP_INTERVAL_S = env.int("STATUS_SWEEP_INTERVAL_S", default=60)
METRICS_RAW_RETENTION_DAYS = env.int("METRICS_RAW_RETENTION_DAYS", default=7)
METRICS_1M_RETENTION_DAYS = env.int("METRICS_1M_RETENTION_DAYS", default=31)
METRICS_1H_RETENTION_DAYS = env.int("METRICS_1H_RETENTION_DAYS", default=400)
METRICS_PARTITIONS_AHEAD_DAYS = env.int("METRICS_PARTITIONS_AHEAD_DAYS", default=3)
CELERY_BEAT_SCHEDULE.update(
    {
        "telemetry-status-sweep": {
            "task": "telemetry.tasks.status_sweep",
            "schedule": STATUS_SWEEP_INTERVAL_S,
        },
        "telemetry-rollup-1m": {"task": "telemetry.tasks.metrics_rollup_minutes", "schedule": 60.0},
        "telemetry-rollup-1h": {"task": "telemetry.tasks.metrics_rollup_hours", "schedule": 15 * 60.0},
        "telemetry-quality-1h": {"task": "telemetry.tasks.quality_rollup_hours", "schedule": 15 * 60.0},
        "telemetry-partitions": {"task": "telemetry.tasks.metrics_partitions_ensure", "schedule": 3600.0},
        "telemetry-retention": {"task": "telemetry.tasks.telemetry_retention", "schedule": 3600.0},
    }
)

# --- telemetry commands ---
CELERY_BEAT_SCHEDULE["telemetry-commands-expire"] = {
    "task": "telemetry.commands.tasks.expire_commands",
    "schedule": env.float("COMMANDS_EXPIRE_INTERVAL_S", default=60.0),
}

# --- identity ---
# Names and addresses the broker's server certificate is valid for (MQTT_DEVICE_HOST is always added).
MQTT_BROKER_SANS = env.list("MQTT_BROKER_SANS", default=["localhost", "127.0.0.1"])
# Where `manage.py broker_config` writes mosquitto.conf, the ACL, the dynsec JSON and the CRL.
MQTT_BROKER_DIR = Path(env.str("MQTT_BROKER_DIR", default=str(DATA_DIR / "mosquitto")))
MQTT_BROKER_PID_FILE = env.str("MQTT_BROKER_PID_FILE", default=str(MQTT_BROKER_DIR / "mosquitto.pid"))
# The user Mosquitto runs as: the CRL is checked readable by it before each SIGHUP ("" skips the check).
MQTT_BROKER_USER = env.str("MQTT_BROKER_USER", default="mosquitto")
# Device listener bind address, and the server listener's (fleet-ingest / fleet-admin): the server
# listener accepts only server-CA certificates; bind it where devices cannot reach it as well.
MQTT_DEVICE_BIND = env.str("MQTT_DEVICE_BIND", default="127.0.0.1")
MQTT_SERVER_BIND = env.str("MQTT_SERVER_BIND", default="127.0.0.1")
# Each session's queue of undelivered QoS 1 messages, in bytes (0: unbounded). The ingest's session
# holds everything devices send while it is away: size it for the longest ingest outage to ride
# out (docs/operations.md, "Broker queues"). Beyond it the broker drops, and counts, messages.
MQTT_BROKER_MAX_QUEUED_BYTES = env.int("MQTT_BROKER_MAX_QUEUED_BYTES", default=1_073_741_824)  # 1 GiB
# How often Mosquitto saves its persistence file (a SIGKILLed broker loses what came after).
MQTT_BROKER_AUTOSAVE_S = env.int("MQTT_BROKER_AUTOSAVE_S", default=60)
MQTT_ADMIN_CERT = env.str("MQTT_ADMIN_CERT", default=str(PKI_DIR / "fleet-admin.crt"))
MQTT_ADMIN_KEY = env.str("MQTT_ADMIN_KEY", default=str(PKI_DIR / "fleet-admin.key"))
PKI_CA_VALID_DAYS = env.int("PKI_CA_VALID_DAYS", default=3650)
PKI_SERVER_CERT_DAYS = env.int("PKI_SERVER_CERT_DAYS", default=397)
# Mosquitto refuses every client once the CRL's nextUpdate passes: refresh it every CRL_REFRESH_S.
PKI_CRL_VALIDITY_HOURS = env.int("PKI_CRL_VALIDITY_HOURS", default=48)
PKI_CRL_REFRESH_S = env.int("PKI_CRL_REFRESH_S", default=3600)
ENROLL_MAX_BODY_BYTES = env.int("ENROLL_MAX_BODY_BYTES", default=32 * 1024)
ENROLL_CSR_MAX_BYTES = env.int("ENROLL_CSR_MAX_BYTES", default=16 * 1024)
ENROLLMENT_TOKEN_DEFAULT_HOURS = env.int("ENROLLMENT_TOKEN_DEFAULT_HOURS", default=24 * 7)
READINESS_CHECKS["broker"] = "fleet.broker_runtime.check_broker"
CELERY_BEAT_SCHEDULE["pki-crl-refresh"] = {"task": "devices.tasks.crl_refresh", "schedule": PKI_CRL_REFRESH_S}
# The embedded broker has one listener for devices and servers: unless told otherwise, the
# server's own connections (MQTT_PORT) go to the device port.
if MQTT_BROKER == "embedded" and "MQTT_PORT" not in env:
    MQTT_PORT = MQTT_DEVICE_PORT
