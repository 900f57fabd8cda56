"""Branches on the page, as a user meets them: edit an earlier message, step between its
versions with the arrows (and the keyboard), reload and find the same branch, and a second tab
that follows a switch. Debian's chromium driven by Playwright against a real daphne with the
stub provider; one site and one logged-in session for the module.
"""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests import browser as browser_steps
from tests.browser import send, thread_id

USER, PASSWORD = "branch.user", "branch-pw"
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.site({USER: PASSWORD})]
DESKTOP = {"width": 1280, "height": 800}
DONE = '[data-role="assistant"][data-status="complete"]'
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture(scope="module")
def session_state(site, browser):
    """The module's one login."""
    return browser_steps.session_state(browser, site, USER, PASSWORD)


def open_chat(browser, site, session_state, path: str = "/"):
    context = browser.new_context(
        storage_state=session_state, base_url=site.url, viewport=DESKTOP, color_scheme="light"
    )
    page = context.new_page()
    page.goto(path)
    page.wait_for_selector("html[data-ready]")
    return context, page


def user_texts(page) -> list[str]:
    return page.locator('[data-role="user"] [data-content]').all_inner_texts()


def test_an_earlier_message_edited_steps_between_versions_and_survives_a_reload(
    site, stub, browser, session_state
):
    context, page = open_chat(browser, site, session_state)
    send(page, "first question")
    expect(page.locator(DONE)).to_have_count(1)
    send(page, "second question")
    expect(page.locator(DONE)).to_have_count(2)
    thread = thread_id(page)

    first = page.locator('[data-role="user"]').first
    first.hover()
    first.locator('[data-message-action="edit"]').click()
    first.locator('textarea[name="edit"]').fill("first question, better")
    first.locator('[data-action="save-edit"]').click()
    expect(page.locator(DONE)).to_have_count(1)
    expect(page.locator('[data-role="assistant"] [data-content]')).to_have_text(
        ["Echo: first question, better"]
    )
    edited = page.locator('[data-role="user"]').first
    expect(edited).to_have_attribute("data-branch", "2/2")
    assert user_texts(page) == ["first question, better"], "the later messages are another branch"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "branches.png"))

    # A second tab of the thread follows the switch.
    _, other = open_chat(browser, site, session_state, f"/t/{thread}/")
    expect(other.locator('[data-role="user"]').first).to_have_attribute("data-branch", "2/2")

    edited.locator('[data-action="branch-prev"]').click()
    expect(page.locator('[data-role="user"]').first).to_have_attribute("data-branch", "1/2")
    expect(page.locator(DONE)).to_have_count(2)
    assert user_texts(page) == ["first question", "second question"]
    expect(other.locator('[data-role="user"]').first).to_have_attribute("data-branch", "1/2")
    expect(other.locator(DONE)).to_have_count(2)

    # The keyboard: the arrow button, then the right arrow key, back to the edited version.
    arrow = page.locator('[data-role="user"]').first.locator('[data-action="branch-next"]')
    expect(arrow).to_have_attribute("aria-label", "Next version")
    arrow.focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator('[data-role="user"]').first).to_have_attribute("data-branch", "2/2")
    assert user_texts(page) == ["first question, better"]

    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(page.locator('[data-role="user"]').first).to_have_attribute("data-branch", "2/2")
    expect(page.locator('[data-role="user"] [data-content]')).to_have_text(
        ["first question, better"]
    )
    context.close()
    other.context.close()
