"""Every environment variable the product reads is read in chatproject/settings.py, and README's
"Configuration" table lists exactly those, in the same groups."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "chatproject" / "settings.py"
README = ROOT / "README.md"

# A read of a named variable: os.environ.get("NAME", ...), env_bool("NAME", ...) and the other
# helpers, os.environ["NAME"], "NAME" in os.environ.
NAME = r'"([A-Z][A-Z0-9_]*)"'
READS = re.compile(
    rf"(?:os\.environ\.get|os\.getenv|env_\w+)\(\s*{NAME}"
    rf"|os\.environ\[\s*{NAME}\s*\]"
    rf"|{NAME} in os\.environ"
)
# settings.py's group headers: `# --- Limits ------`.
GROUP = re.compile(r"^# --- (.+?) -+$", re.M)


def settings_groups() -> dict[str, set[str]]:
    """The variables settings.py reads, by the group whose section reads them (in order)."""
    text = SETTINGS.read_text()
    headers = [(m.start(), m[1]) for m in GROUP.finditer(text)]
    groups: dict[str, set[str]] = {}
    for read in READS.finditer(text):
        name = next(n for n in read.groups() if n)
        above = [group for start, group in headers if start < read.start()]
        assert above, f"{name} is read before the first group"
        groups.setdefault(above[-1], set()).add(name)
    return groups


def readme_groups() -> dict[str, set[str]]:
    """The variables README's configuration table lists, by its bold group rows (in order)."""
    text = README.read_text()
    start = text.index("## Configuration\n")
    section = text[start : text.index("\n## ", start + 1)]
    groups: dict[str, set[str]] = {}
    current = None
    for line in section.splitlines():
        if not line.startswith("| "):
            continue
        first = line.split("|")[1].strip()
        if group := re.fullmatch(r"\*\*(.+)\*\*", first):
            current = groups.setdefault(group[1], set())
        elif names := re.findall(r"`([A-Z][A-Z0-9_]*)`", first):
            assert current is not None, f"{names} is listed before the first group"
            current.update(names)
    return groups


def test_settings_reads_a_variable_in_every_group_of_its_own():
    groups = settings_groups()
    assert list(groups) == [
        "Site and security",
        "Accounts and email",
        "Database",
        "Files",
        "Redis and channel layers",
        "Provider and agent",
        "Streaming",
        "Limits",
        "Operations",
    ]
    assert {"DATABASE_URL", "REDIS_URL", "AGENT_INSTRUCTIONS", "ALLOWED_HOSTS"} <= set().union(
        *groups.values()
    ), "the parser finds multi-line reads and membership tests"


def test_the_readme_table_lists_every_variable_settings_reads_in_the_same_group():
    in_settings, in_readme = settings_groups(), readme_groups()
    assert list(in_readme) == list(in_settings), "the same groups, in the same order"
    for group, names in in_settings.items():
        assert in_readme[group] - names == set(), f"{group}: in README only"
        assert names - in_readme[group] == set(), f"{group}: read in settings.py, not in README"


def test_no_module_but_settings_reads_the_environment():
    reads = re.compile(r"\bos\.(?:environ\b(?!\.setdefault\(\"DJANGO_SETTINGS_MODULE\")|getenv\b)")
    readers = [
        str(path.relative_to(ROOT))
        for folder in ("chat", "chatproject")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != SETTINGS and reads.search(path.read_text())
    ]
    assert readers == [], "read it in chatproject/settings.py and use django.conf.settings"


@pytest.mark.parametrize(
    "name, value",
    [
        ("OWNER_TTL_SECONDS", "0.5"),
        ("OWNER_TTL_SECONDS", "soon"),
        ("REPLY_MAX_TOKENS", "-1"),
        ("SESSION_CHECK_SECONDS", "0"),
        ("TOOL_TIMEOUT_SECONDS", "nan"),
    ],
)
def test_a_setting_out_of_range_stops_the_start_with_its_name(name, value, tmp_path):
    env = {**os.environ, name: value, "CHAT_VAR_DIR": str(tmp_path)}
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"}
        | {"DJANGO_SETTINGS_MODULE": "chatproject.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0, f"{name}={value} was accepted"
    last = started.stderr.strip().splitlines()[-1]
    assert name in last and value in last, last


def test_a_start_serving_static_files_warns_of_nothing(tmp_path):
    """Whitenoise found no STATIC_ROOT (no collectstatic yet) and said so on every start and in
    every test; a newcomer must not wonder about it."""
    static_root = tmp_path / "staticfiles"
    code = (
        "import django; django.setup()\n"
        "from whitenoise.middleware import WhiteNoiseMiddleware\n"
        "WhiteNoiseMiddleware(lambda request: None)\n"
    )
    started = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        | {
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "CHAT_VAR_DIR": str(tmp_path),
            "STATIC_ROOT": str(static_root),
            "SERVE_STATIC": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    assert "No directory at" not in started.stderr


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", "8765", "http://127.0.0.1:8765/"),
        ("0.0.0.0", "9000", "http://127.0.0.1:9000/"),
        ("::1", "8000", "http://[::1]:8000/"),
    ],
)
def test_make_run_prints_the_address_it_serves(host, port, url):
    """`PORT=8765 make run` once said "Log in at http://127.0.0.1:8000/"."""
    from chat.management.commands.ensure_demo_user import site_url

    assert site_url(host, port) == url
    assert "ensure_demo_user --host $(HOST) --port $(PORT)" in (ROOT / "Makefile").read_text()
