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
