"""The chat page in Debian's chromium, driven by Playwright, against a real daphne process."""

import pytest

from tests.servers import stub_site

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def site(stub_server, tmp_path_factory):
    """The product on a laptop's defaults (SQLite, in-process layer), the stub as its model."""
    server = stub_site(stub_server.url, tmp_path_factory.mktemp("var"), {"carol": "carol-pw"})
    yield server
    server.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def log_in(page, site, username: str, password: str) -> None:
    page.goto(site.url + "/")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"], input[type="submit"]')
    page.wait_for_selector('textarea[name="message"]')


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
