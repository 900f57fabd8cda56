"""A reply cut by the token limit, in Debian's chromium against a real daphne: it shows
`data-truncated` and a Continue button, and Continue grows the same reply."""

import pytest

from tests.browser import log_in, send

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.site({"cora": "cora-pw-123"}, REPLY_MAX_TOKENS="4"),
]


def test_a_truncated_reply_offers_continue_and_continue_grows_it(site, stub, page):
    stub.script("a long tale", tokens=[f"t{i} " for i in range(10)], delay_ms=5)
    stub.script("Continue exactly", tokens=["the ", "end."], delay_ms=5)
    log_in(page, site, "cora", "cora-pw-123")
    page.wait_for_selector("html[data-ready]")
    send(page, "a long tale")
    cut = page.locator('[data-role="assistant"][data-truncated="true"]')
    cut.wait_for(timeout=15000)
    assert "t0 t1 t2 t3" in cut.locator("[data-content]").inner_text()
    button = cut.locator('[data-action="continue"]')
    assert button.is_visible()
    reply_id = cut.get_attribute("data-message-id")

    button.click()
    grown = page.locator(f'[data-message-id="{reply_id}"]')
    page.wait_for_function(
        'id => document.querySelector(`[data-message-id="${id}"] [data-content]`)'
        "?.textContent.includes('the end.')",
        arg=reply_id,
        timeout=15000,
    )
    page.locator(f'[data-message-id="{reply_id}"][data-status="complete"]').wait_for()
    assert grown.get_attribute("data-truncated") is None
    assert not grown.locator('[data-action="continue"]').is_visible()
    assert page.locator('[data-role="assistant"]').count() == 1
