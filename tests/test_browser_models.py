"""Choosing the model and rating a reply on the chat page (issue 21), in Debian's chromium
driven by Playwright against a real daphne with two models on the stub provider."""

import re

import pytest
from playwright.sync_api import expect

from tests import browser as browser_steps
from tests.browser import send, thread_id

PICKER = "[data-model-picker]"
DONE = '[data-role="assistant"][data-status="complete"]'
# Each test its own user: the model a user picks is also their new threads' from then on.
USERS = {"erin": "erin-pw", "finn": "finn-pw", "gwen": "gwen-pw", "hugo": "hugo-pw"}
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.site(
        USERS,
        AGENT_MODELS="stub-model,second-model",
        AGENT_MODEL_LABELS="second-model=Second model",
        # A small window for the second model, so a long thread overflows it.
        AGENT_MODEL_CONTEXT="second-model=1024",
        REPLIES_PER_MINUTE="1000",
    ),
]


@pytest.fixture
def context(browser, site):
    context = browser.new_context(base_url=site.url, viewport={"width": 1200, "height": 800})
    yield context
    context.close()


def logged_in(context, site, user: str):
    return browser_steps.logged_in(context, site, user, USERS[user])


def open_tab(context, path: str):
    page = context.new_page()
    page.goto(path)
    page.wait_for_selector("html[data-ready]")
    return page


def saved_reply(page, thread: str) -> dict:
    answer = page.request.get(f"/api/threads/{thread}/messages/")
    assert answer.ok, answer.text()
    return [m for m in answer.json()["results"] if m["role"] == "assistant"][-1]


def asked_models(stub, prompt: str) -> list[str]:
    """The model each chat request for `prompt` named (the title request aside)."""
    return [
        r["body"].get("model")
        for r in stub.requests
        if isinstance(r.get("body"), dict)
        and any(prompt in str(m.get("content")) for m in r["body"].get("messages", []))
        and "Write a short title" not in str(r["body"].get("messages"))
    ]


def test_a_model_picked_for_a_new_chat_writes_the_reply_labels_it_and_stays_picked(
    site, stub, context
):
    stub.script("Which model", tokens=["A ", "reply ", "from ", "the ", "picked ", "model"])
    page = logged_in(context, site, "erin")
    picker = page.locator(PICKER)
    expect(picker).to_be_visible()
    expect(picker).to_have_value("stub-model")
    assert picker.locator("option").all_inner_texts() == ["stub-model", "Second model"]

    picker.select_option("second-model")
    send(page, "Which model are you?")
    thread = thread_id(page)
    page.locator(DONE).wait_for(timeout=15000)

    label = page.locator(f"{DONE} [data-message-model]")
    expect(label).to_have_text("Second model")
    expect(label).to_have_attribute("data-message-model", "second-model")
    assert asked_models(stub, "Which model are you?") == ["second-model"]
    assert saved_reply(page, thread)["model"] == "second-model"

    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(page.locator(PICKER)).to_have_value("second-model")
    expect(page.locator(f"{DONE} [data-message-model]")).to_have_text("Second model")
    # A new chat takes the user's last choice.
    page.click('[data-action="new-thread"]')
    expect(page.locator(PICKER)).to_have_value("second-model")


def test_switching_the_open_threads_model_applies_to_its_next_reply_and_to_its_other_tabs(
    site, stub, context
):
    stub.script("First", tokens=["One"])
    stub.script("Then", tokens=["Two"])
    page = logged_in(context, site, "gwen")
    send(page, "First question")
    thread = thread_id(page)
    page.locator(DONE).wait_for(timeout=15000)
    other = open_tab(context, f"/t/{thread}/")
    expect(other.locator(PICKER)).to_have_value("stub-model")

    page.locator(PICKER).select_option("second-model")
    # The other tab follows without a reload (the PATCH's `thread` frame).
    expect(other.locator(PICKER)).to_have_value("second-model")
    send(page, "Then another")
    expect(page.locator(DONE)).to_have_count(2, timeout=15000)
    labels = page.locator(f"{DONE} [data-message-model]")
    expect(labels).to_have_text(["stub-model", "Second model"])
    assert asked_models(stub, "Then another") == ["second-model"]

    # A refused switch says why and puts the thread's model back.
    page.route(
        f"**/api/threads/{thread}/",
        lambda route: (
            route.fulfill(
                status=400,
                json={"type": "error", "code": "bad_request", "message": "No such model for you."},
            )
            if route.request.method == "PATCH"
            else route.continue_()
        ),
    )
    page.locator(PICKER).select_option("stub-model")
    expect(page.locator("[data-notice-text]")).to_contain_text("No such model for you.")
    expect(page.locator(PICKER)).to_have_value("second-model")
    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(page.locator(PICKER)).to_have_value("second-model")


def test_thumbs_down_with_a_tag_and_a_comment_is_kept_and_every_tab_sees_it(site, stub, context):
    stub.script("Rate me", tokens=["The ", "year ", "is ", "1066."])
    page = logged_in(context, site, "finn")
    send(page, "Rate me please")
    thread = thread_id(page)
    page.locator(DONE).wait_for(timeout=15000)
    other = open_tab(context, f"/t/{thread}/")
    other.locator(DONE).wait_for()

    reply = page.locator(DONE)
    down, up = (
        reply.locator('[data-action="feedback-down"]'),
        reply.locator('[data-action="feedback-up"]'),
    )
    expect(down).to_have_attribute("aria-pressed", "false")
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    panel = reply.locator("[data-feedback-panel]")
    expect(panel).to_be_visible()
    tag = panel.locator('[data-feedback-tag="Inaccurate"]')
    tag.click()
    expect(tag).to_have_attribute("aria-pressed", "true")
    panel.locator('textarea[name="feedback-comment"]').fill("It was 1067 there.")
    panel.locator('[data-action="feedback-save"]').click()
    expect(panel).to_have_count(0)
    expect(reply.locator("[data-feedback-summary]")).to_contain_text("Inaccurate")

    # The other tab sees the thumb and the details without a reload (the `feedback` frame).
    other_reply = other.locator(DONE)
    expect(other_reply.locator('[data-action="feedback-down"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(other_reply.locator("[data-feedback-summary]")).to_contain_text("It was 1067 there.")
    saved = saved_reply(page, thread)["feedback"]
    assert (saved["rating"], saved["tags"], saved["comment"]) == (
        "down",
        ["Inaccurate"],
        "It was 1067 there.",
    )

    page.reload()
    page.wait_for_selector("html[data-ready]")
    reply = page.locator(DONE)
    expect(reply.locator('[data-action="feedback-down"]')).to_have_attribute("aria-pressed", "true")
    reply.locator('[data-action="feedback-edit"]').click()
    panel = reply.locator("[data-feedback-panel]")
    expect(panel.locator('[data-feedback-tag="Inaccurate"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(panel.locator('[data-feedback-tag="Accurate"]')).to_have_attribute(
        "aria-pressed", "false"
    )
    expect(panel.locator('textarea[name="feedback-comment"]')).to_have_value("It was 1067 there.")
    page.keyboard.press("Escape")
    expect(panel).to_have_count(0)
    expect(reply.locator('[data-action="feedback-down"]')).to_be_focused()

    # The pressed thumb again takes the rating back, here and in the other tab.
    reply.locator('[data-action="feedback-down"]').click()
    expect(reply.locator('[data-action="feedback-down"]')).to_have_attribute(
        "aria-pressed", "false"
    )
    expect(other_reply.locator('[data-action="feedback-down"]')).to_have_attribute(
        "aria-pressed", "false"
    )
    expect(other_reply.locator("[data-feedback-summary]")).to_be_hidden()
    assert saved_reply(page, thread)["feedback"] is None


def test_a_reply_whose_history_overflowed_the_models_window_says_so(site, stub, context):
    stub.script("", tokens=["Noted."])
    page = logged_in(context, site, "hugo")
    page.locator(PICKER).select_option("second-model")
    long = " ".join(["words"] * 250)  # 1,500 characters: the window holds about one
    send(page, "First: " + long)
    thread = thread_id(page)
    page.locator(DONE).wait_for(timeout=15000)
    assert page.locator("[data-history-left-out]").count() == 0
    send(page, "Second: " + long)
    expect(page.locator(DONE)).to_have_count(2, timeout=15000)

    note = page.locator(f"{DONE} [data-history-left-out]")
    expect(note).to_have_count(1)
    expect(note).to_have_text(
        re.compile(r"^\d+ earlier messages? (weren't|wasn't) sent to the model: its context")
    )
    left_out = saved_reply(page, thread)["history_left_out"]
    assert left_out > 0
    assert note.get_attribute("data-history-left-out") == str(left_out)
    page.reload()
    page.wait_for_selector("html[data-ready]")
    expect(page.locator(f"{DONE} [data-history-left-out]")).to_have_count(1)
