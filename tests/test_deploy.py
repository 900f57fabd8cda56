"""Production settings pass Django's deployment checks."""

import pytest

from tests.servers import manage, server_env


def test_check_deploy_passes_with_production_settings(tmp_path):
    env = server_env(
        DEBUG="0",
        SECRET_KEY="x7#Kq2!pL9vR4mZ8sT1wY6uB3nC5eH0jG-aF7dQ2kV9zX4cW8rT6yU1iO3pA5sD",
        ALLOWED_HOSTS="chat.example.com",
        CSRF_TRUSTED_ORIGINS="https://chat.example.com",
        CHAT_VAR_DIR=str(tmp_path),
    )
    output = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert "no issues" in output


def test_check_deploy_fails_when_debug_is_left_on(tmp_path):
    env = server_env(DEBUG="1", ALLOWED_HOSTS="chat.example.com", CHAT_VAR_DIR=str(tmp_path))
    with pytest.raises(RuntimeError, match="DEBUG"):
        manage(env, "check", "--deploy", "--fail-level", "WARNING")
