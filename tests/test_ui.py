"""The chat page as people use it: Playwright in Debian's chromium against daphne and the stub.

Few, end-to-end tests of what users notice: a reply is never lost or doubled (reload, a second
tab, a network cut), model text cannot run code, and the everyday actions work. No assertion
here is on a duration: timing is bench/render.py's job.
"""

import json

import pytest

from tests import browser as browser_steps
from tests.browser import log_in, send, thread_id
from tests.servers import stub_site

USER, PASSWORD = "dana", "dana-pw"
# The product on a laptop's defaults, the stub as its model, no rate limit in the way.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.site(
        {USER: PASSWORD},
        REPLIES_PER_MINUTE="1000",
        AGENT_TOOLS="chat.tools.calculate,tests.agent_tools.slow",
    ),
]
REPLY_DONE = '[data-role="assistant"][data-status="complete"]'
STREAMING = '[data-role="assistant"][data-status="streaming"]'


@pytest.fixture(scope="module")
def session_state(site, browser):
    """A logged-in browser session, made once and reused by every test's context."""
    return browser_steps.session_state(browser, site, USER, PASSWORD)


@pytest.fixture
def context(browser, site, session_state):
    """A fresh browser context (its own tabs and network) that is already logged in."""
    context = browser.new_context(
        storage_state=session_state, base_url=site.url, viewport={"width": 1200, "height": 800}
    )
    yield context
    context.close()


def scripted(stub, *scripts: dict, title_delay_ms: float = 0) -> None:
    """Script the stub's replies, then the thread title the product asks a real provider for.

    The title prompt holds the first message, so it would match that message's script too;
    the title script, registered last, wins. `title_delay_ms` holds the title back, for a test
    that looks at the thread before its title arrives.
    """
    for script in scripts:
        stub.script(**script)
    stub.script(
        "Write a short title",
        tokens=["Title ", "by ", "model"],
        first_token_delay_ms=title_delay_ms,
    )


def open_chat(context, site, path: str = "/"):
    """A new tab on the chat page, once its scripts are running."""
    page = context.new_page()
    page.goto(site.url + path)
    page.wait_for_selector("html[data-ready]")
    return page


def saved_messages(page, thread: str) -> list[dict]:
    """The thread's messages as the server saved them (the page's own session)."""
    answer = page.request.get(f"/api/threads/{thread}/messages/")
    assert answer.ok, answer.text()
    return answer.json()["results"]


def reply_text(page) -> str:
    return page.locator('[data-role="assistant"] [data-content]').last.inner_text()


def numbered(prefix: str, count: int) -> list[str]:
    """Tokens whose text shows any doubled or missing piece: ' p0 p1 p2 ...'."""
    return [f" {prefix}{i}" for i in range(count)]


def test_a_reload_mid_reply_continues_it_and_ends_with_the_saved_text(site, stub, context):
    tokens = numbered("r", 70)
    scripted(stub, dict(match="reload me", tokens=tokens, delay_ms=50))
    page = open_chat(context, site)
    # Shift+Enter is a new line, Enter sends.
    page.fill('textarea[name="message"]', "please")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("reload me")
    assert page.input_value('textarea[name="message"]') == "please\nreload me"
    page.keyboard.press("Enter")
    thread = thread_id(page)
    page.locator(STREAMING).filter(has_text="r5").wait_for()

    page.reload()
    page.wait_for_selector("html[data-ready]")
    page.locator(STREAMING).filter(has_text="r40").wait_for()
    page.locator(REPLY_DONE).wait_for(timeout=15000)

    expected = "".join(tokens).strip()
    saved = saved_messages(page, thread)
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[1]["content"].strip() == expected
    assert reply_text(page) == expected
    assert page.locator("[data-role=assistant]").count() == 1
    assert "tok/s" in page.locator(".message__metrics").last.inner_text()


def test_two_tabs_on_one_thread_see_the_same_reply_live_and_stop_in_one_stops_both(
    site, stub, context
):
    scripted(stub, dict(match="two tabs", tokens=numbered("w", 400), delay_ms=40))
    first = open_chat(context, site)
    send(first, "two tabs")
    thread = thread_id(first)
    second = open_chat(context, site, f"/t/{thread}/")

    for tab in (first, second):
        tab.locator(STREAMING).filter(has_text="w3").wait_for()
    seen = reply_text(second)
    second.locator(STREAMING).filter(has_text=f"w{len(seen.split()) + 5}").wait_for()
    assert second.locator('[data-role="user"] [data-content]').inner_text() == "two tabs"

    second.click('[data-action="stop"]')
    for tab in (first, second):
        tab.locator('[data-role="assistant"][data-status="cancelled"]').wait_for(timeout=10000)
        assert tab.locator('[data-action="stop"]').is_hidden()
    saved = saved_messages(first, thread)[-1]
    assert saved["status"] == "cancelled"
    assert 0 < len(saved["content"]) < len("".join(numbered("w", 400)))
    assert reply_text(first) == reply_text(second) == saved["content"].strip()


def test_five_seconds_offline_mid_reply_then_online_completes_with_nothing_doubled_or_missing(
    site, stub, context
):
    tokens = numbered("n", 180)
    scripted(stub, dict(match="offline", tokens=tokens, delay_ms=50))
    page = open_chat(context, site)
    send(page, "go offline")
    thread = thread_id(page)
    page.locator(STREAMING).filter(has_text="n10").wait_for()
    page.wait_for_selector('[data-connection="open"]')

    context.set_offline(True)
    page.wait_for_selector('[data-connection="offline"]')
    assert page.locator('[data-action="reconnect"]').is_visible(), "offered: retry now"
    page.wait_for_timeout(5000)
    context.set_offline(False)

    page.wait_for_selector('[data-connection="open"]', timeout=15000)
    page.locator(REPLY_DONE).wait_for(timeout=20000)
    expected = "".join(tokens).strip()
    assert reply_text(page) == expected
    assert saved_messages(page, thread)[-1]["content"].strip() == expected


HOSTILE = [
    "Try these: ",
    "<img src=x onerror=\"window.__xss='img'\">",
    " and <script>window.__xss='script'</script>",
    " <svg onload=\"window.__xss='svg'\"></svg>",
    " [click me](javascript:window.__xss='link')",
    " <a href=\"javascript:window.__xss='a'\">raw link</a>",
    " ![pic](javascript:window.__xss='image')",
    " [fine](https://example.com/docs)\n\n",
    "```html\n<script>window.__xss='code'</script>\n```\n",
]


def test_model_text_with_html_scripts_and_javascript_links_runs_nothing(site, stub, context):
    scripted(stub, dict(match="hostile", tokens=HOSTILE, delay_ms=20))
    page = open_chat(context, site)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    send(page, "hostile")
    thread_id(page)
    page.locator(REPLY_DONE).wait_for(timeout=10000)

    for attempt in ("live", "reloaded"):
        content = page.locator('[data-role="assistant"] [data-content]')
        assert content.locator("img, script, svg, iframe, [onerror], [onload]").count() == 0
        hrefs = content.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert hrefs == ["https://example.com/docs"], attempt
        link = content.locator("a")
        assert link.get_attribute("rel") == "noopener noreferrer"
        assert link.get_attribute("target") == "_blank"
        text = content.inner_text()
        assert "<img src=x onerror=" in text, "raw HTML is shown as text"
        assert "window.__xss='code'" in content.locator("code").inner_text()
        page.get_by_text("click me").click()
        page.get_by_text("raw link").click()
        assert page.evaluate("window.__xss") is None, attempt
        page.reload()
        page.wait_for_selector("html[data-ready]")
        page.locator(REPLY_DONE).wait_for()
    assert dialogs == []


def answered(context, site, question: str, answer: str):
    """A new tab on a new thread whose question has been answered: the page, the thread's id,
    and the thread's item in the list."""
    page = open_chat(context, site)
    send(page, question)
    thread = thread_id(page)
    page.locator(REPLY_DONE).filter(has_text=answer).wait_for()
    return page, thread, page.locator(f'[data-thread-id="{thread}"]')


def test_a_new_thread_is_titled_from_its_first_message_then_by_the_model(site, stub, context):
    scripted(stub, dict(match="name this thread", tokens=["Named"]), title_delay_ms=2000)
    page = open_chat(context, site)
    send(page, "name this thread")
    item = page.locator(f'[data-thread-id="{thread_id(page)}"]')
    assert item.inner_text().startswith("name this thread"), "titled from the first message"
    # Then the model's title arrives live (a `thread` frame), in the list and the header.
    item.filter(has_text="Title by model").wait_for()
    page.locator("[data-thread-title]").filter(has_text="Title by model").wait_for()


def test_regenerate_replaces_the_reply_with_a_new_one(site, stub, context):
    scripted(
        stub,
        dict(match="regenerate me", tokens=["Answer ", "two"]),
        dict(match="regenerate me", tokens=["Answer ", "one"], times=1),
    )
    page, thread, _ = answered(context, site, "regenerate me", "Answer one")
    page.click('[data-role="assistant"] [data-message-action="regenerate"]')
    page.locator(REPLY_DONE).filter(has_text="Answer two").wait_for()
    assert page.locator("[data-role=assistant]").count() == 1
    assert [m["content"] for m in saved_messages(page, thread)] == ["regenerate me", "Answer two"]


def test_editing_a_question_replaces_it_and_its_answer(site, stub, context):
    scripted(
        stub,
        dict(match="first question", tokens=["Answer ", "one"]),
        dict(match="edited question", tokens=["Answer ", "three"]),
    )
    page, thread, _ = answered(context, site, "first question", "Answer one")
    page.click('[data-role="user"] [data-message-action="edit"]')
    page.fill('textarea[name="edit"]', "edited question")
    page.keyboard.press("Enter")
    page.locator(REPLY_DONE).filter(has_text="Answer three").wait_for()
    page.wait_for_function("() => document.querySelectorAll('[data-message-id]').length === 2")
    assert page.locator('[data-role="user"] [data-content]').inner_text() == "edited question"
    saved = [m["content"] for m in saved_messages(page, thread)]
    assert saved == ["edited question", "Answer three"]


def test_copy_puts_the_replys_markdown_on_the_clipboard(site, stub, context):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    scripted(stub, dict(match="copy me", tokens=["Copied ", "`code`"]))
    page, _, _ = answered(context, site, "copy me", "Copied")
    page.click('[data-role="assistant"] [data-message-action="copy"]')
    assert page.evaluate("navigator.clipboard.readText()") == "Copied `code`"


def tab_on_another_thread(context, site):
    """A second tab, on a thread of its own (made through the API as the page makes one)."""
    tab = open_chat(context, site)
    made = tab.evaluate(
        """async () => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const answer = await fetch('/api/threads/', {
                method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRFToken': token},
                body: JSON.stringify({title: 'The other tab'}),
            });
            return (await answer.json()).id;
        }"""
    )
    tab.goto(f"{site.url}/t/{made}/")
    tab.wait_for_selector("html[data-ready]")
    tab.wait_for_selector('[data-connection="open"]')
    return tab


def test_a_renamed_thread_shows_its_new_title_in_the_list_the_header_and_other_tabs(
    site, stub, context
):
    scripted(stub, dict(match="rename me", tokens=["Sure"]))
    page, thread, item = answered(context, site, "rename me", "Sure")
    item.filter(has_text="Title by model").wait_for()  # no later title to replace the new one
    other = tab_on_another_thread(context, site)
    elsewhere = other.locator(f'[data-thread-list] [data-thread-id="{thread}"]')
    elsewhere.filter(has_text="Title by model").wait_for()
    item.locator('[data-thread-action="rename"]').click()
    item.locator('input[name="title"]').fill("Renamed thread")
    item.locator('input[name="title"]').press("Enter")
    item.locator("a").filter(has_text="Renamed thread").wait_for()
    page.locator("[data-thread-title]").filter(has_text="Renamed thread").wait_for()
    assert page.request.get(f"/api/threads/{thread}/").json()["title"] == "Renamed thread"
    elsewhere.filter(has_text="Renamed thread").wait_for()  # no reload in the other tab


def test_search_finds_a_thread_by_the_text_of_its_messages(site, stub, context):
    scripted(stub, dict(match="zebra crossing", tokens=["Stripes"]))
    page, thread, item = answered(context, site, "how wide is a zebra crossing?", "Stripes")
    item.filter(has_text="Title by model").wait_for()  # so only the message has these words
    listed = page.locator("[data-thread-list] [data-thread-id]")
    page.fill("[data-thread-search]", "zebra crossing")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-thread-list] [data-thread-id]').length === 1"
    )
    assert listed.get_attribute("data-thread-id") == thread
    page.fill("[data-thread-search]", "no such words anywhere")
    page.get_by_text("No thread matches.").wait_for()
    page.fill("[data-thread-search]", "")
    item.wait_for()


def test_a_thread_is_exported_as_markdown_and_as_json(site, stub, context):
    scripted(stub, dict(match="export me", tokens=["Exported ", "answer"]))
    page, _, _ = answered(context, site, "export me", "Exported answer")
    as_markdown = page.request.get(page.locator('[data-export="markdown"]').get_attribute("href"))
    assert as_markdown.ok
    assert "export me" in as_markdown.text() and "Exported answer" in as_markdown.text()
    as_json = page.request.get(page.locator('[data-export="json"]').get_attribute("href"))
    assert "Exported answer" in json.dumps(as_json.json())


def test_deleting_the_open_thread_removes_it_here_and_in_other_tabs(site, stub, context):
    scripted(stub, dict(match="delete me", tokens=["Gone ", "soon"]))
    page, thread, item = answered(context, site, "delete me", "Gone soon")
    other = tab_on_another_thread(context, site)
    elsewhere = other.locator(f'[data-thread-list] [data-thread-id="{thread}"]')
    elsewhere.wait_for()
    page.on("dialog", lambda dialog: dialog.accept())
    item.locator('[data-thread-action="delete"]').click()
    page.wait_for_url(site.url + "/")
    item.wait_for(state="detached")
    assert page.request.get(f"/api/threads/{thread}/").status == 404
    elsewhere.wait_for(state="detached")  # no reload in the other tab


def test_a_failed_reply_shows_a_server_error_and_retry_answers_again(site, stub, context):
    scripted(
        stub,
        dict(match="flaky", tokens=["Recovered ", "answer"]),
        dict(match="flaky", tokens=["Half ", "an ", "answer"], error_after=1, times=1),
    )
    page = open_chat(context, site)
    send(page, "flaky")
    thread_id(page)
    failed = page.locator('[data-role="assistant"][data-status="error"]')
    failed.wait_for(timeout=10000)
    note = failed.locator(".message__note")
    assert note.get_attribute("data-error-kind") == "server"
    assert note.inner_text().startswith("Server error")
    failed.locator('[data-message-action="retry"]').click()
    page.locator(REPLY_DONE).filter(has_text="Recovered answer").wait_for(timeout=10000)
    assert page.locator("[data-role=assistant]").count() == 1


def test_the_page_is_usable_at_phone_width(site, stub, context):
    scripted(stub, dict(match="phone", tokens=["Small ", "screen ", "reply"]))
    page = open_chat(context, site)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(
        "() => document.querySelector('#sidebar').getBoundingClientRect().right <= 0"
    )
    send(page, "phone")
    page.locator(REPLY_DONE).wait_for(timeout=10000)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing overflows sideways"
    page.click('[data-action="toggle-sidebar"]')
    page.wait_for_function(
        "() => document.querySelector('#sidebar').getBoundingClientRect().left >= 0"
    )
    page.keyboard.press("Escape")
    page.wait_for_function(
        "() => document.querySelector('#sidebar').getBoundingClientRect().right <= 0"
    )


@pytest.fixture(scope="module")
def budget_site(stub_server, tmp_path_factory):
    """A server whose daily token budget is one reply of 10 tokens."""
    var = tmp_path_factory.mktemp("var")
    budget = {"DAILY_TOKEN_BUDGET": "10", "REPLY_MAX_TOKENS": "10"}
    with stub_site(stub_server.url, var, {USER: PASSWORD}, **budget) as server:
        yield server


def test_the_tokens_left_today_are_shown_and_a_spent_budget_is_told(budget_site, stub, browser):
    scripted(stub, dict(match="spend", tokens=["t "] * 10))
    context = browser.new_context(base_url=budget_site.url)
    page = context.new_page()
    log_in(page, budget_site, USER, PASSWORD)
    page.wait_for_selector("html[data-ready]")
    usage = page.locator("[data-usage]")
    usage.filter(has_text="10 tokens left today").wait_for()
    send(page, "spend")
    page.locator(REPLY_DONE).wait_for()
    usage.filter(has_text="0 tokens left today").wait_for()
    send(page, "spend again")
    # Said once, on the message it refused (not in the notice bar as well).
    refused = page.locator('[data-role="user"][data-status="error"] .message__note')
    refused.filter(has_text="budget of 10 tokens is spent").wait_for()
    assert page.locator("[data-notice]").is_hidden()
    assert page.locator("[data-role=assistant]").count() == 1, "nothing was started"
    context.close()


def test_tool_steps_appear_live_survive_a_reload_and_open_to_their_result(site, stub, context):
    scripted(
        stub,
        dict(
            match="use tools",
            tool_calls=[
                [{"name": "calculate", "arguments": {"expression": "6*7"}}],
                [{"name": "slow", "arguments": {"seconds": 2.5}}],
            ],
            tokens=["The ", "answer ", "is ", "42."],
        ),
    )
    page = open_chat(context, site)
    send(page, "use tools")
    thread_id(page)
    step = page.locator("[data-step]")
    # Live: the first step done, the second running (with its spinner).
    step.filter(has_text="slow").and_(page.locator('[data-step-status="running"]')).wait_for()
    assert step.filter(has_text="calculate").get_attribute("data-step-status") == "done"
    assert step.filter(has_text="slow").locator(".step__spinner").count() == 1

    page.reload()  # mid-tool: the steps come back from the reply's snapshot
    page.wait_for_selector("html[data-ready]")
    step.filter(has_text="slow").wait_for()
    page.locator(REPLY_DONE).wait_for(timeout=15000)
    assert [step.nth(i).get_attribute("data-step-status") for i in range(step.count())] == [
        "done",
        "done",
    ]
    assert reply_text(page) == "The answer is 42."

    calculate = step.filter(has_text="calculate")
    output = calculate.locator("[data-step-output]")
    assert not output.is_visible(), "a step is one compact line until opened"
    calculate.locator("summary").click()
    assert output.inner_text() == "6*7 = 42"
    assert calculate.locator("[data-step-arguments]").inner_text() == '{"expression": "6*7"}'
