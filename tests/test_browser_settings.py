"""The settings page in Debian's chromium against a real daphne: instructions set there reach
the model on the next reply, the theme reaches <html data-theme>, and the password changes."""

import pytest

from tests.browser import log_in, send

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.site({"sam": "sam-pw-123"})]

OWN = "Always answer in French."


def test_instructions_set_on_the_settings_page_reach_the_model_and_the_password_changes(
    site, stub, page
):
    stub.script("bonjour", tokens=["Salut", " !"])
    log_in(page, site, "sam", "sam-pw-123")
    page.click('[data-action="settings"]')
    page.wait_for_url(site.url + "/settings/")
    # Keyboard only: the instructions, the theme, then Save.
    page.focus("[data-instructions]")
    page.keyboard.type(OWN)
    page.check('input[name="theme"][value="dark"]')
    page.keyboard.press("Tab")  # from the radio group to Save
    assert page.evaluate("document.activeElement.dataset.action") == "save-settings"
    page.keyboard.press("Enter")
    page.get_by_text("Saved.").wait_for()
    assert page.get_attribute("html", "data-theme") == "dark"
    assert page.input_value("[data-instructions]") == OWN

    page.click("text=← Back to chat")
    page.wait_for_selector('textarea[name="message"]')
    send(page, "bonjour")
    page.locator('[data-role="assistant"][data-status="complete"]').wait_for(timeout=15000)
    sent = [r for r in stub.requests if r["path"].endswith("/chat/completions")]
    system = [m["content"] for m in sent[0]["body"]["messages"] if m["role"] == "system"]
    assert system[0].endswith(OWN), "the stub saw the user's instructions"

    page.goto(site.url + "/settings/")
    page.fill('input[name="old_password"]', "sam-pw-123")
    page.fill('input[name="new_password1"]', "a new and longer passphrase")
    page.fill('input[name="new_password2"]', "a new and longer passphrase")
    page.click('[data-action="change-password"]')
    page.get_by_text("Password changed.").wait_for()

    page.context.clear_cookies()
    log_in(page, site, "sam", "a new and longer passphrase")
