"""Real daphne processes for end-to-end tests: the same helpers `make cluster` uses."""

from scripts.processes import (  # noqa: F401
    Daphne,
    TcpProxy,
    cookie_header,
    free_port,
    login,
    manage,
    new_database,
    prepare,
    server_env,
)


def stub_env(stub_url: str, var_dir, **overrides: str) -> dict[str, str]:
    """A server environment with the stub as its model provider and its own var/ folder."""
    return server_env(
        AGENT_PROVIDER="compatible",
        AGENT_MODEL="stub-model",
        OPENAI_BASE_URL=stub_url,
        OPENAI_API_KEY="test-key",
        CHAT_VAR_DIR=str(var_dir),
        **overrides,
    )


def stub_site(stub_url: str, var_dir, users: dict[str, str], **overrides: str) -> Daphne:
    """One daphne process on laptop defaults (SQLite, in-process layer), the stub as its model,
    with these users (name -> password); started."""
    env = stub_env(stub_url, var_dir, **overrides)
    prepare(env, users)
    return Daphne(env).start()
