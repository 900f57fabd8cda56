"""The page's finish (issue 24), as a daily user meets it: dark mode from the system with a
toggle, one wording for a refusal and one way to retry it, the composer's length limit, long
messages folded, the demo notice dismissed for good, the sidebar foot and its links, the
thread list on a phone, in date groups, pinned and live with no thread open, math, the 404
page, and axe-core's check of the chat and settings pages. Debian's chromium driven by
Playwright against a real daphne with the stub provider; one site and one logged-in session
for the module.
"""

import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests import browser as browser_steps
from tests.browser import send, thread_id

# A name long enough to be cut by a squeezed foot ("de…" on a phone once).
USER, PASSWORD = "daniela.rossi", "daniela-pw"
LIMIT = 300
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.site(
        {USER: PASSWORD},
        AGENT_MODELS="stub-model,second-model",
        AGENT_TOOLS="chat.tools.calculate",
        MAX_MESSAGE_CHARS=str(LIMIT),
        # One reply at a time: a second one is refused `rate_limited` (the refusal test).
        MAX_REPLIES_IN_FLIGHT="1",
        REPLIES_PER_MINUTE="1000",
    ),
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
DONE = '[data-role="assistant"][data-status="complete"]'
TOGGLE = '[data-action="toggle-theme"]'

# WCAG contrast of each matched element's text against the background it is drawn on (the
# first ancestor's that is not transparent): [selector, ratio, colour, background].
CONTRAST = """(selectors) => {
  const rgba = (value) => {
    const parts = value.match(/[\\d.]+/g).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const luminance = ({ r, g, b }) => {
    const [R, G, B] = [r, g, b].map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  const backgroundOf = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const bg = rgba(getComputedStyle(n).backgroundColor);
      if (bg.a > 0.5) return bg;
    }
    return rgba(getComputedStyle(document.body).backgroundColor);
  };
  return selectors.map((selector) => {
    const node = [...document.querySelectorAll(selector)].find((n) => n.getClientRects().length);
    if (!node) return [selector, null, '', ''];
    const fg = rgba(getComputedStyle(node).color);
    const bg = backgroundOf(node);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    return [selector, ratio, getComputedStyle(node).color, `rgb(${bg.r}, ${bg.g}, ${bg.b})`];
  });
}"""
# Text a user reads: messages, code and its highlighting, tool steps, the model picker, the
# feedback panel, a file chip and a sent file, notices, the sidebar.
READ = [
    '[data-role="user"] [data-content]',
    '[data-role="assistant"] [data-content] p',
    ".codeblock code",
    ".codeblock .hljs-keyword",
    ".codeblock .hljs-string",
    ".codeblock__head",
    ".step__name",
    ".step__state",
    ".message__model",
    ".message__metrics",
    '.message__action[data-message-action="copy"]',
    "[data-model-picker]",
    ".feedback__title",
    ".feedback__optional",
    ".chip",
    ".attachment__name",
    ".attachment__meta",
    ".upload__name",
    ".upload__meta",
    "[data-notice-text]",
    ".sidebar__user",
    ".thread__link",
    ".topbar__title",
    "[data-connection]",
    'textarea[name="message"]',
    ".composer__keys",
]


@pytest.fixture(scope="module")
def session_state(site, browser):
    """One login for the module; every test's context starts from its cookies."""
    return browser_steps.session_state(browser, site, USER, PASSWORD)


def scripted(stub, *scripts: tuple[str, dict]) -> None:
    """Script the stub's replies, then the title the product asks for (its prompt holds the
    first message, so the reply's script would answer it too; the last script wins)."""
    for match, fields in scripts:
        stub.script(match, **fields)
    stub.script("Write a short title", tokens=["A ", "title"])


def new_context(browser, site, session_state, *, viewport=DESKTOP, color_scheme="light"):
    return browser.new_context(
        storage_state=session_state,
        base_url=site.url,
        viewport=viewport,
        color_scheme=color_scheme,
    )


def open_chat(context, path: str = "/"):
    page = context.new_page()
    page.goto(path)
    page.wait_for_selector("html[data-ready]")
    return page


def low_contrast(page, minimum: float = 4.5) -> list:
    """The elements of READ on screen whose text is under `minimum` against its background."""
    found = page.evaluate(CONTRAST, READ)
    missing = [selector for selector, ratio, *_ in found if ratio is None]
    assert not missing, f"not on screen: {missing}"
    return [row for row in found if row[1] < minimum]


def test_dark_mode_follows_the_system_every_part_reads_in_both_and_the_toggle_is_remembered(
    site, stub, browser, session_state
):
    answer = (
        "Six times seven is **42**.\n\n"
        '```python\ndef answer() -> str:\n    return "forty-two"\n```\n'
    )
    scripted(
        stub,
        (
            "multiply",
            {
                "tool_calls": [[{"name": "calculate", "arguments": {"expression": "6*7"}}]],
                "tokens": [answer[i : i + 12] for i in range(0, len(answer), 12)],
            },
        ),
    )
    context = new_context(browser, site, session_state, color_scheme="dark")
    page = open_chat(context)
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    expect(page.locator(TOGGLE)).to_have_attribute("aria-pressed", "true")

    # A reply with a tool step, a code block, a sent file; a file waiting in the composer;
    # the feedback panel open; a notice up.
    page.locator("input[type=file]").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"six and seven\n"}
    )
    expect(page.locator('[data-uploads] li[data-upload-status="ready"]')).to_have_count(1)
    send(page, "multiply six by seven")
    page.locator(DONE).wait_for(timeout=15000)
    page.locator(f'{DONE} [data-action="feedback-down"]').click()
    page.locator("[data-feedback-panel]").wait_for()
    page.locator("input[type=file]").set_input_files(
        {"name": "more.txt", "mimeType": "text/plain", "buffer": b"more\n"}
    )
    expect(page.locator('[data-uploads] li[data-upload-status="ready"]')).to_have_count(1)
    page.fill('textarea[name="message"]', "x" * (LIMIT + 1))
    page.keyboard.press("Enter")  # over the limit: the notice says so
    expect(page.locator("[data-notice]")).to_be_visible()

    assert low_contrast(page) == []
    page.locator(TOGGLE).click()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert low_contrast(page) == []
    # The highlighting's stylesheet follows the theme.
    sheets = "[...document.querySelectorAll('link[data-theme-sheet]')]"
    media = page.evaluate(f"{sheets}.map((l) => [l.dataset.themeSheet, l.media])")
    assert media == [["light", "all"], ["dark", "not all"]]

    # Remembered in this browser: a reload and another tab stay light though the system is dark.
    page.reload()
    page.wait_for_selector("html[data-ready]")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    other = open_chat(context)
    assert other.evaluate("document.documentElement.dataset.theme") == "light"
    # Toggled back to the system's theme, the page follows the system again.
    other.locator(TOGGLE).click()
    assert other.evaluate("localStorage.getItem('chat-theme')") is None
    page.emulate_media(color_scheme="light")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    page.emulate_media(color_scheme="dark")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    context.close()


def test_a_refused_send_says_why_once_on_the_message_and_leaves_one_way_to_retry(
    site, stub, browser, session_state
):
    scripted(
        stub,
        ("keep talking", {"tokens": [f" w{i}" for i in range(400)], "delay_ms": 10}),
        ("second question", {"tokens": ["Second ", "answer."]}),
    )
    context = new_context(browser, site, session_state)
    first = open_chat(context)
    send(first, "keep talking")
    first.locator('[data-role="assistant"][data-status="streaming"]').wait_for()

    page = open_chat(context)
    send(page, "second question")
    refused = page.locator('[data-role="user"][data-status="error"]')
    refused.wait_for()
    note = refused.locator(".message__note")
    expect(note).to_have_text("Rate limited: At most 1 replies at once; wait for one to end.")
    expect(page.locator("[data-notice]")).to_be_hidden()  # said once, on the message
    # One way to retry: the message's Retry. The box is empty, so Enter sends nothing twice.
    assert page.input_value('textarea[name="message"]') == ""
    page.keyboard.press("Enter")
    expect(page.locator('[data-role="user"]')).to_have_count(1)
    retry = refused.locator('[data-message-action="retry"]')
    expect(retry).to_be_visible()

    first.locator('[data-action="stop"]').click()
    first.locator('[data-role="assistant"][data-status="cancelled"]').wait_for()
    retry.click()
    page.locator(DONE).wait_for(timeout=10000)
    expect(page.locator('[data-role="user"]')).to_have_count(1)
    expect(page.locator('[data-role="user"]')).to_have_attribute("data-status", "complete")
    context.close()


def test_the_composer_refuses_over_limit_text_and_long_messages_fold(
    site, stub, browser, session_state
):
    context = new_context(browser, site, session_state)
    page = open_chat(context)
    box, send_button, counter = (
        page.locator('textarea[name="message"]'),
        page.locator('[data-action="send"]'),
        page.locator("[data-counter]"),
    )
    box.fill("x" * (LIMIT - 40))
    expect(counter).to_be_hidden()
    box.fill("x" * (LIMIT - 10))
    expect(counter).to_have_text(f"{LIMIT - 10} / {LIMIT}")
    expect(send_button).to_be_enabled()
    box.fill("x" * (LIMIT + 1))
    expect(counter).to_have_class(re.compile("composer__counter--over"))
    expect(send_button).to_be_disabled()
    expect(box).to_have_attribute("aria-invalid", "true")
    box.press("Enter")
    expect(page.locator("[data-notice-text]")).to_have_text(
        f"Not sent: The message is {LIMIT + 1} characters; the limit is {LIMIT}."
    )
    expect(page.locator("[data-message-id]")).to_have_count(0)

    # Long (more than 20 lines): folded, "Show more" unfolds it, "Show less" folds it back.
    scripted(stub, ("line 1", {"tokens": ["Read ", "it."]}))
    text = "\n".join(f"line {i}" for i in range(1, 13)) + "\n" * 12 + "end"
    send(page, text)
    page.locator(DONE).wait_for(timeout=10000)
    mine = page.locator('[data-role="user"]')
    expect(mine).to_have_attribute("data-folded", "true")
    content = mine.locator("[data-content]")
    assert content.evaluate("(n) => n.scrollHeight > n.clientHeight")
    mine.locator('[data-action="show-more"]').click()
    expect(mine).to_have_attribute("data-folded", "false")
    expect(mine.locator('[data-action="show-more"]')).to_have_text("Show less")
    assert content.evaluate("(n) => n.scrollHeight <= n.clientHeight + 1")
    context.close()


def as_offline_demo(route):
    """The stub is no offline demo model: serve the page as if its models were the demo."""
    response = route.fetch()
    body = response.text().replace('"offlineDemo": false', '"offlineDemo": true')
    route.fulfill(response=response, body=body)


def test_on_a_phone_and_a_desktop_the_foot_the_links_the_demo_notice_and_the_list_behave(
    site, browser, session_state
):
    context = new_context(browser, site, session_state, viewport=PHONE, color_scheme="dark")
    context.route(re.compile(r"^https?://[^/]+/$"), as_offline_demo)
    page = open_chat(context)
    banner = page.locator("[data-demo-banner]")
    expect(banner).to_be_visible()
    assert banner.bounding_box()["height"] < 50, "one line on a phone"
    banner.locator('[data-action="dismiss-demo"]').click()
    expect(banner).to_be_hidden()
    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(banner).to_be_hidden()  # remembered

    # The thread list opens without focusing search (no keyboard popping up).
    page.click('[data-action="toggle-sidebar"]')
    expect(page.locator("#sidebar")).to_be_in_viewport()
    assert page.evaluate("document.activeElement.matches('[data-thread-search]')") is False
    assert page.evaluate("document.activeElement.closest('#sidebar') !== null")

    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        name = page.locator(".sidebar__user")
        expect(name).to_have_text(USER)
        assert name.evaluate("(n) => n.scrollWidth <= n.clientWidth"), f"name cut at {viewport}"
    # ChatKit and the API docs, in the foot's menu.
    page.click("[data-more-menu] summary")
    for link, path in (("chatkit", "/chatkit/"), ("api-docs", "/api/docs/")):
        anchor = page.locator(f'[data-link="{link}"]')
        expect(anchor).to_be_visible()
        assert anchor.get_attribute("href") == path
        assert page.request.get(path).ok
    expect(page.locator('[data-action="log-out"]')).to_be_visible()
    context.close()


def test_an_unknown_thread_and_any_other_address_get_the_products_404_page(
    site, browser, session_state
):
    context = new_context(browser, site, session_state, viewport=PHONE, color_scheme="dark")
    page = context.new_page()
    for path, says in (
        (f"/t/{uuid.uuid4()}/", "This thread does not exist"),
        ("/no/such/page/", "There is no page at this address"),
    ):
        answer = page.goto(path)
        assert answer.status == 404
        expect(page.locator("[data-error-page]")).to_contain_text(says)
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        assert low_contrast_of(page, [".login__title", ".error-card__text"]) == []
    page.click('[data-action="home"]')
    page.wait_for_selector("html[data-ready]")
    assert page.url == site.url + "/"
    context.close()


def low_contrast_of(page, selectors: list[str], minimum: float = 4.5) -> list:
    return [row for row in page.evaluate(CONTRAST, selectors) if (row[1] or 0) < minimum]


def test_a_thread_made_here_opens_on_a_phone_in_the_dark(site, stub, browser, session_state):
    """The phone layout with a reply, in dark: nothing overflows the screen's width; its
    formula is math (MathML from KaTeX) and its prices stay text."""
    answer = "So $E=mc^2$, at $5 and $10."
    scripted(
        stub, ("phone question", {"tokens": [answer[i : i + 4] for i in range(0, len(answer), 4)]})
    )
    context = new_context(browser, site, session_state, viewport=PHONE, color_scheme="dark")
    page = open_chat(context)
    send(page, "phone question")
    page.locator(DONE).wait_for(timeout=10000)
    thread_id(page)
    math = page.locator(f"{DONE} [data-content] math")
    expect(math).to_have_count(1)
    assert math.locator("annotation").text_content() == "E=mc^2"
    assert math.evaluate("(m) => m.getBoundingClientRect().width > 20"), "laid out as math"
    expect(page.locator(f"{DONE} [data-content] p")).to_contain_text("at $5 and $10.")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert low_contrast_of(page, READ[:2] + [".sidebar__user", "[data-connection]"]) == []
    context.close()


def test_the_list_is_grouped_pinned_by_keyboard_and_live_in_a_tab_with_no_thread_open(
    site, stub, browser, session_state
):
    scripted(stub, ("from the other tab", {"tokens": ["Fine."]}))
    context = new_context(browser, site, session_state)
    home, other = open_chat(context), open_chat(context)  # both at /, no thread open
    send(other, "from the other tab")
    made = thread_id(other)
    other.locator(DONE).wait_for(timeout=10000)
    # Made, then titled, in the other tab: this one shows it under Today, with no reload.
    item = home.locator(f'[data-thread-list] [data-thread-id="{made}"]')
    expect(item.locator(".thread__link")).to_have_text("A title")
    today = home.locator('[data-thread-group="today"]')
    expect(today.locator(".thread-group__title")).to_have_text("Today")
    expect(today.locator(f'[data-thread-id="{made}"]')).to_have_count(1)

    # Pinned from the keyboard: the button says so, the thread moves to Pinned, and keeps focus.
    pin = item.locator('[data-thread-action="pin"]')
    expect(pin).to_have_attribute("aria-pressed", "false")
    pin.focus()
    home.keyboard.press("Enter")
    pinned = home.locator('[data-thread-group="pinned"]')
    expect(pinned.locator(f'[data-thread-id="{made}"]')).to_have_count(1)
    expect(pin).to_have_attribute("aria-pressed", "true")
    expect(pin).to_be_focused()
    assert home.locator("[data-thread-group]").first.get_attribute("data-thread-group") == (
        "pinned"
    )
    # The tab with the thread open hears of it on its thread socket.
    expect(
        other.locator(f'[data-thread-id="{made}"] [data-thread-action="pin"]')
    ).to_have_attribute("aria-pressed", "true")
    home.keyboard.press(" ")
    expect(pin).to_have_attribute("aria-pressed", "false")
    expect(today.locator(f'[data-thread-id="{made}"]')).to_have_count(1)

    # Deleted in the other tab: gone here too.
    other.once("dialog", lambda dialog: dialog.accept())
    other.locator(f'[data-thread-id="{made}"] [data-thread-action="delete"]').click()
    expect(item).to_have_count(0)
    context.close()


AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text()
# axe-core's serious and critical findings, each as "rule: the first elements it names".
AXE_RUN = """async () => {
  const { violations } = await axe.run(document, { resultTypes: ['violations'] });
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 4).map((n) => n.target).join(', ')}`);
}"""


def axe_findings(page) -> list[str]:
    """What axe-core (vendored in tests/vendor/, never served) finds serious or critical.
    Injected through the driver, which the page's CSP does not govern."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE + "\n;undefined")
    return page.evaluate(AXE_RUN)


def test_axe_finds_nothing_serious_on_the_chat_page_and_settings_in_light_and_dark(
    site, stub, browser, session_state
):
    answer = "So $E=mc^2$.\n\n```python\nprint(42)\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    scripted(stub, ("check me", {"tokens": [answer]}))
    context = new_context(browser, site, session_state)
    page = open_chat(context)
    send(page, "check me")
    page.locator(DONE).wait_for(timeout=10000)
    found = {}
    for viewport, scheme in (
        (DESKTOP, "light"),
        (DESKTOP, "dark"),
        (PHONE, "dark"),
        (PHONE, "light"),
    ):
        page.set_viewport_size(viewport)
        page.emulate_media(color_scheme=scheme)
        expect(page.locator("html")).to_have_attribute("data-theme", scheme)
        found[(viewport["width"], scheme)] = axe_findings(page)
    page.goto("/settings/")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        expect(page.locator("html")).to_have_attribute("data-theme", scheme)
        found[("settings", scheme)] = axe_findings(page)
    assert {where: problems for where, problems in found.items() if problems} == {}
    context.close()
