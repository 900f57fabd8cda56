"""The models users may pick, the provider serving each, and who may use them.

Configured by the environment (settings.py; README, "Models"):

- `AGENT_MODELS`: comma-separated ids. A bare `id` is served by `AGENT_PROVIDER`; `id@name`
  by provider `name`: `local` (the embedded model), `openai` and `compatible` (reached at
  `OPENAI_BASE_URL` with `OPENAI_API_KEY`), or any other name, an OpenAI-compatible server at
  `AGENT_PROVIDER_<NAME>_BASE_URL` with `AGENT_PROVIDER_<NAME>_API_KEY` (optional). Unset:
  the one model of `AGENT_PROVIDER` and `AGENT_MODEL`.
- `AGENT_MODEL`: the default, when it is one of them (else the first).
- `AGENT_VISION_MODELS`: the ids that accept images.
- `AGENT_MODEL_LABELS` (`id=Label,...`) and `AGENT_MODEL_CONTEXT` (`id=tokens,...`: the
  model's context window; well-known families have theirs built in).

Configuration only, no database: which of these a user may use (`ModelAccess`, admin) and
which one a reply uses is model_choice.py's.
"""

import functools
import re
from dataclasses import dataclass, field

from django.conf import settings

from chat.errors import ChatError

KINDS = ("local", "openai", "compatible")
DEFAULT_IDS = {"local": "SmolLM2-135M-Instruct", "openai": "gpt-4o-mini", "compatible": "default"}
LOCAL_CONTEXT_TOKENS = 2048  # per parallel slot of the embedded model (local_model.py)
# Context windows of well-known model families, by id prefix (the longest prefix wins); a
# model not listed here and not in AGENT_MODEL_CONTEXT gets UNKNOWN_CONTEXT_TOKENS.
KNOWN_CONTEXT_TOKENS = {
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "llama3.1": 128_000,
    "llama3.2": 128_000,
    "llama3": 8_192,
    "mistral": 32_768,
    "qwen2.5": 32_768,
    "SmolLM2": LOCAL_CONTEXT_TOKENS,
}
UNKNOWN_CONTEXT_TOKENS = 16_384
# Characters of history a context token is taken to hold: English runs near four; three keeps
# code and other languages inside the window too.
CHARS_PER_TOKEN = 3
# What the instructions and the tools' descriptions take of the window, in tokens.
INSTRUCTIONS_TOKENS = 512


@dataclass(frozen=True)
class Model:
    """One model users may pick, and the provider that serves it."""

    id: str
    label: str
    provider: str  # the provider's name, as configured (`local`, `openai`, or another)
    kind: str  # which client and API: `local`, `openai` (Responses), `compatible`
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    vision: bool = False
    context_tokens: int = UNKNOWN_CONTEXT_TOKENS
    default: bool = False

    @property
    def offline_demo(self) -> bool:
        """The embedded toy model: labelled as such, and given no tools."""
        return self.kind == "local"

    def history_chars(self, reply_tokens: int) -> int:
        """Characters of the thread's history this model's window takes beside a reply of
        `reply_tokens` and the instructions."""
        reply = min(reply_tokens, self.context_tokens // 2)
        return max(1000, (self.context_tokens - reply - INSTRUCTIONS_TOKENS) * CHARS_PER_TOKEN)

    def public(self) -> dict:
        """As `GET /api/models/` and the page show it."""
        return {
            "id": self.id,
            "label": self.label,
            "provider": self.provider,
            "default": self.default,
            "vision": self.vision,
        }


def _pairs(text: str) -> dict[str, str]:
    """`a=b,c=d` as a dict (the value may hold `=`; blanks are skipped)."""
    pairs = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            pairs[name.strip()] = value.strip()
    return pairs


def _context(model_id: str, configured: dict[str, str]) -> int:
    if model_id in configured:
        try:
            return max(int(configured[model_id]), 1024)
        except ValueError:
            raise ChatError(
                "provider_error",
                f"AGENT_MODEL_CONTEXT for {model_id} must be a number of tokens.",
                recoverable=False,
            ) from None
    known = [prefix for prefix in KNOWN_CONTEXT_TOKENS if model_id.startswith(prefix)]
    return KNOWN_CONTEXT_TOKENS[max(known, key=len)] if known else UNKNOWN_CONTEXT_TOKENS


def _endpoint(provider: str) -> tuple[str, str, str]:
    """The kind, base URL and key of a provider, by its name."""
    if provider == "local":
        return "local", "", ""
    if provider in ("openai", "compatible"):
        return provider, settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY
    named = settings.AGENT_PROVIDER_ENDPOINTS.get(provider)
    if named is None:
        variable = f"AGENT_PROVIDER_{re.sub(r'[^A-Z0-9]', '_', provider.upper())}_BASE_URL"
        raise ChatError(
            "provider_error",
            f"Provider {provider!r} has no address: set {variable}.",
            recoverable=False,
        )
    return "compatible", named["base_url"], named["api_key"]


@functools.lru_cache(maxsize=8)
def _configured(
    provider: str,
    default_id: str,
    listed: tuple[str, ...],
    vision: tuple[str, ...],
    labels: tuple[tuple[str, str], ...],
    context: tuple[tuple[str, str], ...],
    endpoints: tuple[tuple[str, str, str], ...],
    openai: tuple[str, str],
) -> tuple[Model, ...]:
    """The catalog for these settings (cached: it is read on every start)."""
    if provider not in KINDS:
        raise ChatError(
            "provider_error",
            f"AGENT_PROVIDER must be one of {', '.join(KINDS)}, not {provider!r}",
            recoverable=False,
        )
    entries = listed or (f"{default_id or DEFAULT_IDS[provider]}@{provider}",)
    label_of, context_of = dict(labels), dict(context)
    models: list[Model] = []
    for entry in entries:
        model_id, _, served_by = entry.partition("@")
        served_by = served_by or provider
        kind, base_url, api_key = _endpoint(served_by)
        if any(m.id == model_id for m in models):
            continue  # ids are unique across providers: the first entry wins
        models.append(
            Model(
                id=model_id,
                label=label_of.get(model_id)
                or (f"{model_id} (offline demo)" if kind == "local" else model_id),
                provider=served_by,
                kind=kind,
                base_url=base_url,
                api_key=api_key,
                vision=model_id in vision,
                context_tokens=LOCAL_CONTEXT_TOKENS
                if kind == "local" and model_id not in context_of
                else _context(model_id, context_of),
            )
        )
    chosen = next((m for m in models if m.id == default_id), models[0])
    return tuple(Model(**{**m.__dict__, "default": True}) if m is chosen else m for m in models)


def models() -> tuple[Model, ...]:
    """Every configured model, the default marked."""
    return _configured(
        settings.AGENT_PROVIDER,
        settings.AGENT_MODEL,
        tuple(settings.AGENT_MODELS),
        tuple(settings.AGENT_VISION_MODELS),
        tuple(sorted(_pairs(settings.AGENT_MODEL_LABELS).items())),
        tuple(sorted(_pairs(settings.AGENT_MODEL_CONTEXT).items())),
        tuple(
            (name, e["base_url"], e["api_key"])
            for name, e in sorted(settings.AGENT_PROVIDER_ENDPOINTS.items())
        ),
        (settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY),
    )


def default() -> Model:
    """The model a thread takes when nothing else was chosen."""
    return next(m for m in models() if m.default)


def get(model_id: str) -> Model | None:
    """The configured model with that id, or None."""
    return next((m for m in models() if m.id == model_id), None)
