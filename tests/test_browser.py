"""The chat page in Debian's chromium, driven by Playwright, against a real daphne process."""

import pytest

from tests.browser import log_in

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.site({"carol": "carol-pw"})]


def test_a_user_logs_in_sends_hello_watches_the_reply_stream_and_finds_it_after_reload(
    site, stub, page
):
    words = [" word" + str(i) for i in range(40)]
    stub.script("hello", tokens=["Hi!", *words], delay_ms=40)
    log_in(page, site, "carol", "carol-pw")
    page.wait_for_selector("[data-connection]", state="attached")

    page.fill('textarea[name="message"]', "hello")
    page.click('[data-action="send"]')

    reply = page.locator('[data-role="assistant"]').last
    streaming = page.locator('[data-role="assistant"][data-status="streaming"] [data-content]')
    streaming.filter(has_text="Hi!").wait_for(timeout=10000)
    partial = streaming.inner_text()
    page.locator('[data-role="assistant"][data-status="complete"]').wait_for(timeout=15000)
    full = "Hi!" + "".join(words)
    assert reply.locator("[data-content]").inner_text() == full
    assert partial.startswith("Hi!") and len(partial) < len(full), "the text arrived in pieces"
    assert page.locator('[data-role="user"] [data-content]').last.inner_text() == "hello"
    assert "/t/" in page.url

    page.reload()
    page.locator('[data-role="assistant"][data-status="complete"]').wait_for(timeout=10000)
    assert page.locator('[data-role="assistant"] [data-content]').last.inner_text() == full
    assert page.locator('[data-role="user"] [data-content]').last.inner_text() == "hello"
    assert page.locator("[data-thread-id]").count() == 1
