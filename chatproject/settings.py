"""Settings, read from the environment; every default runs on a laptop with nothing installed.

Every environment variable the product reads is read here and nowhere else, in the groups
below; README's "Configuration" table lists each with its default and meaning, group by
group (tests/test_settings.py checks that the two agree). Code reads `django.conf.settings`.
"""

import contextlib
import json
import math
import os
import re
import secrets
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """A boolean variable: 1/true/yes/on are true."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    """A comma-separated variable."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_number(name: str, default: float, *, minimum: float = 0, whole: bool = False) -> Any:
    """A number variable, at least `minimum` (a whole number if `whole`); anything else stops
    the start with a message naming the variable."""
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return int(default) if whole else float(default)
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum:
        kind = "a whole number" if whole else "a number"
        raise ImproperlyConfigured(f"{name} must be {kind} of at least {minimum:g}, not {raw!r}")
    return value


# --- Django and the API (no variables) -----------------------------------------------------
# The framework's wiring: what every deployment shares.

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "chat",
    "csp",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"

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
                "chat.accounts.page_context",  # <html data-theme>, the login page's links
            ],
        },
    },
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

REST_FRAMEWORK = {
    # Bearer first, so an anonymous request gets 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "chat.auth.ClientSecretAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "chat.inputs.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # `?format=` is ours (thread export), not DRF's renderer switch.
    "URL_FORMAT_OVERRIDE": None,
    # A ChatError from a service answers as docs/protocol.md's error object.
    "EXCEPTION_HANDLER": "chat.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Chat API",
    "DESCRIPTION": "Threads, messages and streamed agent replies (see README: Protocol).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chat.api.schema.add_streaming_paths",
    ],
}


# --- Site and security ---------------------------------------------------------------------
# Who may reach the site and how: the secret, host names, HTTPS, logins and credentials, and
# where a laptop keeps its files. Production sets SECRET_KEY, ALLOWED_HOSTS and
# CSRF_TRUSTED_ORIGINS (docs/deploy.md).

VAR_DIR = Path(os.environ.get("CHAT_VAR_DIR", BASE_DIR / "var"))


def _laptop_secret_key() -> str:
    """A random key kept in var/ so sessions survive restarts on a laptop; production sets one."""
    path = VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written private from its first byte, and linked into place whole: two processes starting
    # together agree on one key, and no other user can ever read it.
    draft = VAR_DIR / f".secret_key.{os.getpid()}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(50))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process was first: use its key
    finally:
        draft.unlink()
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or _laptop_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
CSRF_FAILURE_VIEW = "chat.views.csrf_failure"  # JSON on the JSON APIs

# HTTPS hardening is on for a real deployment (ALLOWED_HOSTS given, DEBUG off) and off on a
# laptop, where the product is served over plain http://127.0.0.1.
SECURE_HTTPS = env_bool("SECURE_HTTPS", not DEBUG and "ALLOWED_HOSTS" in os.environ)
if SECURE_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_number("SECURE_HSTS_SECONDS", 31536000, whole=True)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Every asset is served from this site, and the page has no inline script or style: a strict
# policy fits (django-csp). Model output is sanitized markdown; this is the second line.
# Only the API's Swagger page relaxes it (chat/api/urls.py: its inline start-up script).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Password guessing, on the login page and the admin's alike (django-axes): after
# LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that pair is refused
# (429), the right password included, for LOGIN_COOLOFF_MINUTES. A success resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_number("LOGIN_FAILURE_LIMIT", "5", minimum=1, whole=True)
AXES_COOLOFF_TIME = env_number("LOGIN_COOLOFF_MINUTES", "15") / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# The proxies whose X-Forwarded-For gives the client's address (chat/proxy.py); none by default.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", "")
AXES_CLIENT_IP_CALLABLE = "chat.proxy.client_address"  # REMOTE_ADDR, as TrustedProxies set it

# How often an open WebSocket or event stream checks that its session or client secret is still
# valid (logout, password change, deactivation, expiry end it with 4401 on every process).
SESSION_CHECK_SECONDS = env_number("SESSION_CHECK_SECONDS", "10", minimum=0.05)
# Lifetime of a client secret from POST /api/chatkit/session.
CLIENT_SECRET_TTL = env_number("CLIENT_SECRET_TTL", "600", minimum=1, whole=True)

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
# daphne serves /static/ itself (whitenoise, from the source folders: no collectstatic needed)
# unless a proxy in front does (SERVE_STATIC=0). Whitenoise serves only the files it indexed,
# so a path like /static/..%2fchatproject/settings.py is a plain 404.
SERVE_STATIC = env_bool("SERVE_STATIC", True)
if SERVE_STATIC:
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
    WHITENOISE_USE_FINDERS = True
    # Whitenoise also serves STATIC_ROOT and warns ("No directory at") on every start, and in
    # every test, while collectstatic has not made it: make it, empty (it is git-ignored). A
    # read-only tree (a deployment that ran collectstatic elsewhere) leaves it as it is.
    with contextlib.suppress(OSError):
        STATIC_ROOT.mkdir(parents=True, exist_ok=True)


# --- Accounts and email --------------------------------------------------------------------
# Who may make an account, and the mail that goes with it (chat/accounts.py). An operator
# creates users in the admin unless they open sign-up (each new account confirmed by a link
# mailed to it, ADMINS told) or password reset by email. The console backend prints mail on a
# laptop; EMAIL_HOST turns on SMTP.
SIGNUP_ENABLED = env_bool("SIGNUP_ENABLED", False)
PASSWORD_RESET_ENABLED = env_bool("PASSWORD_RESET_ENABLED", False)
# Sign-ups and reset requests one client address may make in an hour (each also counted per
# email address); shared by every process through Redis (CACHES), else per process.
ACCOUNT_REQUESTS_PER_HOUR = env_number("ACCOUNT_REQUESTS_PER_HOUR", "5", minimum=1, whole=True)
# How long an operator's invite link works, unless they say otherwise (chat/accounts.py).
INVITE_DAYS = env_number("INVITE_DAYS", "7", minimum=1, whole=True)
# How long a sign-up's or a reset's link works.
PASSWORD_RESET_TIMEOUT = env_number("ACCOUNT_LINK_HOURS", "24", minimum=1, whole=True) * 3600
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_number("EMAIL_PORT", "587", minimum=1, whole=True)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10  # a slow mail server must not hang a sign-up
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "chat@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Who hears of each new account (mail_admins): `Name <address>` or plain addresses.
ADMINS = [(name or address, address) for name, address in map(parseaddr, env_list("ADMINS", ""))]
if any("@" not in address for _, address in ADMINS):
    raise ImproperlyConfigured(f"ADMINS must be email addresses, not {os.environ['ADMINS']!r}")


# --- Database ------------------------------------------------------------------------------
# Threads, messages and token usage: SQLite under CHAT_VAR_DIR on a laptop, PostgreSQL shared
# by every process in production.

# Under ASGI every request may run in a different thread: persistent connections leak there.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg's pool (Django 5.1+): a connection per database call costs a TCP and auth
    # handshake, and under load most of a reply's start. CONN_MAX_AGE stays 0: each call gives
    # its connection back to the pool. Health checks make the pool drop connections that a
    # PostgreSQL restart broke instead of handing them out. A server that is down refuses at
    # once; one that is unreachable must not hang a request (connect_timeout).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "connect_timeout": 5,
            "pool": {
                "min_size": env_number("DATABASE_POOL_MIN", "2", minimum=1, whole=True),
                "max_size": env_number("DATABASE_POOL_MAX", "20", minimum=1, whole=True),
                "timeout": 5,
            },
        }
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The file holds every user's messages: created private (SQLite gives its -wal and -shm
    # files the database file's mode).
    _sqlite = Path(str(DATABASES["default"]["NAME"]))
    if ":" not in _sqlite.name and not _sqlite.exists() and _sqlite.parent.exists():
        os.close(os.open(_sqlite, os.O_WRONLY | os.O_CREAT, 0o600))
    # WAL and IMMEDIATE transactions let the streaming task and page requests write without
    # "database is locked" errors on a laptop.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}


# --- Files ---------------------------------------------------------------------------------
# Where attachments are kept (chat/attachments.py): Django's storage API, a folder under
# CHAT_VAR_DIR by default (one machine only: several need a shared store, e.g. S3 through
# django-storages, docs/deploy.md).

ATTACHMENTS_STORAGE = os.environ.get(
    "ATTACHMENTS_STORAGE", "django.core.files.storage.FileSystemStorage"
)
# The storage's OPTIONS as JSON, e.g. {"bucket_name": "chat-files"} for S3 (its keys come from
# the AWS_* variables boto3 reads itself).
ATTACHMENTS_STORAGE_OPTIONS = json.loads(os.environ.get("ATTACHMENTS_STORAGE_OPTIONS") or "{}")
if ATTACHMENTS_STORAGE == "django.core.files.storage.FileSystemStorage":
    ATTACHMENTS_STORAGE_OPTIONS.setdefault("location", str(VAR_DIR / "attachments"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": {"BACKEND": ATTACHMENTS_STORAGE, "OPTIONS": ATTACHMENTS_STORAGE_OPTIONS},
}


# --- Redis and channel layers --------------------------------------------------------------
# Without REDIS_URL everything lives in this one process; with it, the processes share live
# replies, frames, counts and `stop` through Redis (one client per event loop: chat/runtime.py).

REDIS_URL = os.environ.get("REDIS_URL", "")
# The sign-up and reset throttle's counts (chat/accounts.py): shared through Redis when there
# is one, else in this process.
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
CHANNEL_LAYER = os.environ.get("CHANNEL_LAYER", "pubsub")
CHANNEL_CAPACITY = env_number("CHANNEL_CAPACITY", "20000", minimum=1, whole=True)


def redis_channel_layer(url: str, kind: str | None = None) -> dict:
    """The Redis channel layer: it carries `stop` to the process that runs a reply. Frames do
    not go through it (chat/broadcast.py); the choice was measured when they did
    (bench/streaming.py, docs/performance.md).

    `pubsub` (the default): Redis pub/sub, fire-and-forget with no per-process queue; it
    streamed with 27x lower p50 latency than `core` at 10 streams.
    `core` (CHANNEL_LAYER=core): channels-redis's list-based layer. All sockets of a process
    share one list, so its capacity is per process (CHANNEL_CAPACITY), and redis-py's default
    5 s socket timeout equals its 5 s blocking read, which then fails at random: give the
    socket slack.
    """
    kind = kind or CHANNEL_LAYER
    host = {"address": url, "socket_timeout": 30, "socket_keepalive": True}
    if kind == "pubsub":
        return {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [host]},
        }
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [host], "capacity": CHANNEL_CAPACITY, "expiry": 60},
    }


if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000},
        }
    }


# --- Provider and agent --------------------------------------------------------------------
# Which model answers (chat/agent.py) and how to reach it; secrets come only from the
# environment.

AGENT_PROVIDER = os.environ.get("AGENT_PROVIDER", "local")
AGENT_MODEL = os.environ.get("AGENT_MODEL", "")
AGENT_INSTRUCTIONS = os.environ.get(
    "AGENT_INSTRUCTIONS",
    "You are a helpful assistant. Answer clearly and concisely; use Markdown when it helps.",
)
# Named as the openai SDK names them.
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")


# The models users may pick (chat/catalog.py): `id` (served by AGENT_PROVIDER) or `id@name`
# (served by provider `name`: local, openai, compatible, or a server of its own below).
AGENT_MODELS = env_list("AGENT_MODELS", "")
AGENT_VISION_MODELS = env_list("AGENT_VISION_MODELS", "")
AGENT_MODEL_LABELS = os.environ.get("AGENT_MODEL_LABELS", "")  # id=Label,...
AGENT_MODEL_CONTEXT = os.environ.get("AGENT_MODEL_CONTEXT", "")  # id=tokens,...
# Each other provider named in AGENT_MODELS: AGENT_PROVIDER_<NAME>_BASE_URL, and its key in
# AGENT_PROVIDER_<NAME>_API_KEY (optional). <NAME> is the name upper-cased, `-` and `.` as `_`.
PROVIDER_KINDS = ("local", "openai", "compatible")


def provider_endpoints(models: list[str]) -> dict[str, dict[str, str]]:
    """The address and key of each provider that AGENT_MODELS names beyond the built-in ones."""
    endpoints = {}
    for name in {model.partition("@")[2] for model in models} - {"", *PROVIDER_KINDS}:
        key = re.sub(r"[^A-Z0-9]", "_", name.upper())
        if url := os.environ.get(f"AGENT_PROVIDER_{key}_BASE_URL", ""):
            api_key = os.environ.get(f"AGENT_PROVIDER_{key}_API_KEY", "")
            endpoints[name] = {"base_url": url, "api_key": api_key}
    return endpoints


AGENT_PROVIDER_ENDPOINTS = provider_endpoints(AGENT_MODELS)
# The tags the page offers with a thumbs up or down (the API takes any short strings).
FEEDBACK_TAGS = env_list(
    "FEEDBACK_TAGS", "Accurate,Helpful,Well written,Inaccurate,Not helpful,Too long,Unsafe"
)
# The Agents SDK's own switch: traces go to OpenAI only when OpenAI is the provider anyway, and
# not even then with this set (the tests set it).
OPENAI_AGENTS_DISABLE_TRACING = env_bool("OPENAI_AGENTS_DISABLE_TRACING", False)
# With a workflow id, POST /api/chatkit/session creates hosted OpenAI ChatKit sessions.
CHATKIT_WORKFLOW_ID = os.environ.get("CHATKIT_WORKFLOW_ID", "")
# The ChatKit web component's domain key, for the /chatkit/ page: "local-dev" serves
# localhost; any other host registers its domain with OpenAI and sets the key it gets.
CHATKIT_DOMAIN_KEY = os.environ.get("CHATKIT_DOMAIN_KEY", "local-dev")
# The embedded model (chat/local_model.py): parallel slots, so several replies (threads,
# users) stream from it at once, and llama.cpp's log verbosity.
LOCAL_MODEL_PARALLEL = env_number("LOCAL_MODEL_PARALLEL", 4, minimum=1, whole=True)
LOCAL_MODEL_VERBOSITY = env_number("LOCAL_MODEL_VERBOSITY", 0, whole=True)
# The agent's tools (chat/tools.py), by dotted path, comma-separated; empty: none. The
# embedded demo model gets none whatever this says. A tool that runs past TOOL_TIMEOUT_SECONDS
# or raises is an error result the model reads; its output is cut at TOOL_OUTPUT_CHARS.
AGENT_TOOLS = [
    path.strip()
    for path in os.environ.get(
        "AGENT_TOOLS", "chat.tools.current_time,chat.tools.calculate,chat.tools.search_threads"
    ).split(",")
    if path.strip()
]
TOOL_TIMEOUT_SECONDS = env_number("TOOL_TIMEOUT_SECONDS", "15", minimum=0.01)
TOOL_OUTPUT_CHARS = env_number("TOOL_OUTPUT_CHARS", "4000", minimum=100, whole=True)


# --- Streaming -----------------------------------------------------------------------------
# How a reply streams: its time bounds, how tokens are coalesced into frames, and how often its
# text is saved while it runs.

STREAM_TIMEOUT = env_number("STREAM_TIMEOUT", 120, minimum=1)
# Longest silence allowed between two provider chunks before the reply ends as `timeout`.
STREAM_IDLE_TIMEOUT = env_number("STREAM_IDLE_TIMEOUT", 60, minimum=1)
BUFFER_SIZE = env_number("BUFFER_SIZE", 5, minimum=1, whole=True)
# A partial frame is flushed at most this long after its first character arrived.
FLUSH_INTERVAL_MS = env_number("FLUSH_INTERVAL_MS", 30)
CHECKPOINT_SECONDS = env_number("CHECKPOINT_SECONDS", 2, minimum=0.05)
# An HTTP event stream with nothing to send sends a comment this often, so no proxy takes it
# for idle and cuts it (a cut ChatKit request stops its reply).
SSE_HEARTBEAT_SECONDS = env_number("SSE_HEARTBEAT_SECONDS", 15, minimum=0.05)


# --- Limits --------------------------------------------------------------------------------
# What one user may use, on every transport and process (chat/limits.py, chat/quota.py,
# chat/slow_readers.py; docs/security.md). 0 turns a count off where noted.

MAX_MESSAGE_CHARS = env_number("MAX_MESSAGE_CHARS", 16000, minimum=1, whole=True)

# The longest instructions of their own a user may give the agent (the settings page): they
# are sent with every reply, so they cost input tokens every turn.
USER_INSTRUCTIONS_CHARS = env_number("USER_INSTRUCTIONS_CHARS", "2000", whole=True)

# The most tokens one reply may cost (the provider's max_tokens / max_output_tokens): a reply
# cannot run up a bill without end.
REPLY_MAX_TOKENS = env_number("REPLY_MAX_TOKENS", "4096", minimum=1, whole=True)

# Output tokens one user may spend per UTC day, titles included (0: no budget). A reply
# reserves REPLY_MAX_TOKENS when it starts and settles to the provider's count when it ends.
DAILY_TOKEN_BUDGET = env_number("DAILY_TOKEN_BUDGET", "200000", whole=True)

# Input tokens (the history sent, every turn) one user may spend per UTC day, over all models
# (0: no budget). Checked when a reply starts: the reply that crosses it finishes.
DAILY_INPUT_BUDGET = env_number("DAILY_INPUT_BUDGET", "0", whole=True)

# Attachments (chat/attachments.py): the largest upload, refused before it is stored; what
# one user's uploads may take in all; a text's or PDF's characters a model is given (past it,
# cut with a note); files on one message.
MAX_UPLOAD_BYTES = env_number("MAX_UPLOAD_BYTES", str(10 * 1024 * 1024), minimum=1, whole=True)
UPLOAD_QUOTA_BYTES = env_number("UPLOAD_QUOTA_BYTES", str(200 * 1024 * 1024), whole=True)
ATTACHMENT_TEXT_CHARS = env_number("ATTACHMENT_TEXT_CHARS", "100000", minimum=100, whole=True)
MAX_ATTACHMENTS = env_number("MAX_ATTACHMENTS", "10", minimum=1, whole=True)

# Replies one user may start per minute, over WebSocket and HTTP alike (0: no limit).
REPLIES_PER_MINUTE = env_number("REPLIES_PER_MINUTE", "30", whole=True)

# Replies one user may have running at once, over all threads and processes (0: no limit).
MAX_REPLIES_IN_FLIGHT = env_number("MAX_REPLIES_IN_FLIGHT", "3", whole=True)

# WebSockets and thread event streams one user may hold open at once, over all processes
# (0: no limit): one more WebSocket is closed with 4429, one more event stream gets 429.
MAX_SOCKETS_PER_USER = env_number("MAX_SOCKETS_PER_USER", "20", whole=True)

# Commands one WebSocket may send per second, in bursts of twice that (0: no limit).
COMMANDS_PER_SECOND = env_number("COMMANDS_PER_SECOND", "10")

# Bytes a client may leave unread on its connection before it is dropped as too slow: a
# WebSocket is closed with 1013 (it reconnects and resumes from `ready`), an event stream ends.
SLOW_READER_BYTES = env_number("SLOW_READER_BYTES", str(1024 * 1024), whole=True)

# The longest a thread event stream (SSE) stays open; EventSource reconnects and resumes.
SSE_MAX_SECONDS = env_number("SSE_MAX_SECONDS", "3600", minimum=1)


# --- Operations ----------------------------------------------------------------------------
# Living with several processes, outages and restarts (docs/deploy.md, docs/reliability.md),
# and the log.

# A process that has not said it is alive for this long is taken as dead, and the replies it
# owned become `interrupted` (multi-process deployments only).
OWNER_TTL_SECONDS = env_number("OWNER_TTL_SECONDS", "10", minimum=1)
# A database or Redis outage shorter than this is ridden out: a reply's start, final save and
# terminal frame are retried for this long while the provider keeps streaming (docs/reliability.md).
OUTAGE_SECONDS = env_number("OUTAGE_SECONDS", "30")
# On SIGTERM a process stops taking new replies and lets its running ones go on for this long;
# those still running then end as `interrupted`, their shown text saved (docs/deploy.md).
DRAIN_SECONDS = env_number("DRAIN_SECONDS", "20")

# After this many sockets (and event streams) have opened, what is alive is frozen out of the
# garbage collector's full collections at the next quiet moment (chat/collector.py; 0: never).
GC_FREEZE_SOCKETS = env_number("GC_FREEZE_SOCKETS", "200", whole=True)

# Who may read GET /metrics besides a direct loopback peer: `Authorization: Bearer <token>`.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

LOG_LEVEL = os.environ.get("LOG_LEVEL", "info").upper()
# `json`: one JSON object a line (chat/logs.py), a reply's end with its ids, model, status,
# tokens and timings as fields; `text` (the default): plain lines.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "chat.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        "openai.agents": {"level": "WARNING"},
    },
}
