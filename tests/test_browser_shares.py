"""Sharing a thread on the chat page (issue 23), in Debian's chromium driven by Playwright
against a real daphne with the stub provider: the header's Share dialog makes a link, a
logged-out browser reads it (and opens no socket and no thread API), the owner revokes it
and the link is a 404. One site and one logged-in session for the module.

With `SCREENSHOTS=<dir>` set, it saves the dialog and the shared page there
(`share-dialog.png`, `share-page.png`, `share-page-dark.png`: docs/screenshots/ holds the
first two).
"""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests import browser as browser_steps
from tests.browser import send, thread_id

USER, PASSWORD = "nora.lindqvist", "nora-pw"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.site(
        {USER: PASSWORD}, AGENT_TOOLS="chat.tools.calculate", REPLIES_PER_MINUTE="1000"
    ),
]
DESKTOP = {"width": 1280, "height": 800}
DONE = '[data-role="assistant"][data-status="complete"]'
ANSWER = (
    "Six times seven is **42**. To check it in Python:\n\n"
    "```python\nprint(6 * 7)  # 42\n```\n\n"
    "- multiplication is repeated addition\n- so 7 + 7 + 7 + 7 + 7 + 7 = 42\n"
)


def screenshot(page, name: str) -> None:
    if directory := os.environ.get("SCREENSHOTS"):
        page.screenshot(path=Path(directory) / name)


def test_a_thread_shared_from_the_header_is_read_logged_out_then_revoked(site, stub, browser):
    stub.script(
        "multiply",
        tool_calls=[[{"name": "calculate", "arguments": {"expression": "6*7"}}]],
        tokens=[ANSWER[i : i + 16] for i in range(0, len(ANSWER), 16)],
    )
    stub.script("Write a short title", tokens=["Six ", "times ", "seven"])
    owner_context = browser.new_context(
        storage_state=browser_steps.session_state(browser, site, USER, PASSWORD),
        base_url=site.url,
        viewport=DESKTOP,
        color_scheme="light",
    )
    owner = owner_context.new_page()
    owner.goto("/")
    owner.wait_for_selector("html[data-ready]")
    share_button = owner.locator('[data-action="share"]')
    expect(share_button).to_be_hidden()  # a new chat has nothing to share
    send(owner, "multiply six by seven")
    owner.locator(DONE).wait_for(timeout=15000)
    private_thread = thread_id(owner)
    expect(owner.locator("[data-thread-title]")).to_have_text("Six times seven")

    # The dialog opens from the keyboard, makes a link, lists it; Escape closes it.
    share_button.focus()
    owner.keyboard.press("Enter")
    dialog = owner.locator("[data-share-dialog]")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("aria-labelledby", "share-dialog-title")
    expect(owner.locator("[data-share-empty]")).to_be_visible()
    owner.locator("[data-share-expiry]").select_option(label="In 7 days")
    owner.locator('[data-action="create-share"]').click()
    link = owner.locator("[data-share-url]")
    expect(link).to_have_value(re.compile(r"^http://.+/s/[\w-]{43}/$"))
    url = link.input_value()
    items = owner.locator("[data-share-token]")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("expires")
    expect(owner.locator("[data-share-status]")).to_contain_text("Link created")
    screenshot(owner, "share-dialog.png")
    owner.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # A logged-out browser reads the snapshot: the chat's look, no composer, no socket, no
    # request to the thread's API.
    reader_context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    reader = reader_context.new_page()
    sockets, requests = [], []
    reader.on("websocket", lambda socket: sockets.append(socket.url))
    reader.on("request", lambda request: requests.append(request.url))
    response = reader.goto(url)
    assert response.status == 200
    reader.wait_for_selector("html[data-ready]")
    expect(reader.locator("[data-thread-title]")).to_have_text("Six times seven")
    expect(reader.locator('[data-role="user"] [data-content]')).to_have_text(
        "multiply six by seven"
    )
    reply = reader.locator('[data-role="assistant"]')
    expect(reply.locator("[data-content] strong")).to_have_text("42")
    expect(reply.locator(".codeblock")).to_have_count(1)
    expect(reply.locator("[data-step]")).to_have_count(1)
    expect(reply.locator(".step__name")).to_have_text("calculate")
    expect(reader.locator("[data-share-footer]")).to_contain_text("shared snapshot")
    expect(reader.locator('textarea, [data-thread-list], [data-action="send"]')).to_have_count(0)
    assert USER not in reader.content()
    screenshot(reader, "share-page.png")
    reader.emulate_media(color_scheme="dark")
    expect(reader.locator("html")).to_have_attribute("data-theme", "dark")
    screenshot(reader, "share-page-dark.png")
    assert sockets == []
    assert not [u for u in requests if "/api/" in u or private_thread in u], requests

    # Revoked from the dialog: gone from the list, and the link is the 404 page.
    share_button.click()
    expect(items).to_have_count(1)
    items.first.locator('[data-action="revoke-share"]').click()
    expect(items).to_have_count(0)
    expect(owner.locator("[data-share-status]")).to_contain_text("revoked")
    response = reader.reload()
    assert response.status == 404
    expect(reader.locator('[data-error-page="404"]')).to_contain_text("revoked")
    owner_context.close()
    reader_context.close()
