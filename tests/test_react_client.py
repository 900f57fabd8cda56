"""clients/react, the React hooks: their protocol types are current, and the hooks work against
a real daphne with the stub provider (the rest of the package's tests run under node's test
runner: `make js-test`)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts import protocol_types
from tests.conftest import require
from tests.servers import login

pytestmark = pytest.mark.site({"rhea": "rhea-pw"})

ROOT = Path(__file__).resolve().parent.parent
LIVE = ROOT / "clients" / "react" / "tests" / "live-thread.mjs"

LONG = [f" word{i}" for i in range(600)]
SHORT = ["Short", " and", " sweet."]


def test_the_checked_in_typescript_declarations_are_current():
    assert protocol_types.OUT.read_text() == protocol_types.render(), (
        "clients/react/protocol.d.ts is stale: run python -m scripts.protocol_types"
    )


@pytest.mark.slow
def test_use_thread_sends_streams_resumes_after_a_reload_and_stops(site, stub):
    node = shutil.which("node")
    installed = bool(node) and (ROOT / "node_modules" / "jsdom").is_dir()
    require("node with the JS packages (`make js-test` installs them)", installed)
    stub.script("react-long", tokens=LONG, delay_ms=15)
    stub.script("react-short", tokens=SHORT, delay_ms=5)
    client = login(site.url, "rhea", "rhea-pw")
    secret = client.post("/api/chatkit/session").json()["client_secret"]
    thread_id = client.post("/api/threads/", json={}).json()["id"]

    done = subprocess.run(
        [node, str(LIVE)],
        cwd=ROOT,
        env={
            **os.environ,
            "CHAT_URL": site.url,
            "CHAT_SECRET": secret,
            "CHAT_THREAD": thread_id,
            "CHAT_LONG": "react-long please",
            "CHAT_SHORT": "react-short please",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    # Sent and streamed; the reload resumed the same reply where it was and it went on.
    assert seen["userMessageSaved"]
    assert seen["historyAfterReload"] == ["user", "assistant"]
    assert seen["afterReload"].startswith(seen["beforeReload"])
    # Stopped: the text shown is the text saved, and it is not the whole reply.
    assert seen["savedStatus"] == "cancelled"
    assert seen["saved"] == seen["stopped"]
    assert seen["stopped"].startswith(seen["afterReload"])
    assert len(seen["stopped"]) < len("".join(LONG))
    saved = client.get(f"/api/threads/{thread_id}/messages/").json()["results"]
    assert saved[1]["id"] == seen["replyId"]
    assert (saved[1]["status"], saved[1]["content"]) == ("cancelled", seen["stopped"])
    # The same thread over the streaming POST.
    assert seen["streamed"] == seen["streamedResolved"] == "".join(SHORT)
    assert seen["streamedThread"] == thread_id
    assert [(m["role"], m["content"]) for m in saved[2:]] == [
        ("user", "react-short please"),
        ("assistant", "".join(SHORT)),
    ]
