"""Files and images in a message on the chat page (issue 22), in Debian's chromium driven by
Playwright against a real daphne with the stub provider: attached by drag and drop, the
button and paste, uploaded with progress, sent, shown in the message, kept after a reload,
opened; a file the server refuses says why on its chip; an image for a model without vision
is refused and stays to send again."""

import json

import pytest
from playwright.sync_api import expect

from tests import browser as browser_steps
from tests.browser import send, thread_id

PICKER = "[data-model-picker]"
DONE = '[data-role="assistant"][data-status="complete"]'
CHIPS = "[data-uploads] li"
USERS = {"ivy": "ivy-pw", "jack": "jack-pw", "kate": "kate-pw"}
LIMIT = 50_000
NOTES = "Quarterly notes: revenue rose by 12 percent, mostly in the north.\n"
TABLE = "region,revenue\nnorth,112\nsouth,97\n"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.site(
        USERS,
        AGENT_MODELS="stub-model,second-model",
        AGENT_MODEL_LABELS="second-model=Second model",
        AGENT_VISION_MODELS="stub-model",
        MAX_UPLOAD_BYTES=str(LIMIT),
        REPLIES_PER_MINUTE="1000",
    ),
]

# A file dropped on an element, as the browser's drag and drop delivers it.
DROP = """([selector, name, type, text]) => {
  const target = document.querySelector(selector);
  const data = new DataTransfer();
  data.items.add(new File([text], name, { type }));
  for (const kind of ['dragenter', 'dragover', 'drop']) {
    const init = { dataTransfer: data, bubbles: true, cancelable: true };
    target.dispatchEvent(new DragEvent(kind, init));
  }
}"""
# A PNG made in the page (a canvas, drawn) and pasted into the message box, as a screenshot is.
PASTE_IMAGE = """async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 64;
  canvas.height = 48;
  const draw = canvas.getContext('2d');
  draw.fillStyle = '#2f62d8';
  draw.fillRect(0, 0, 64, 48);
  draw.fillStyle = '#f59e0b';
  draw.fillRect(16, 12, 32, 24);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  const data = new DataTransfer();
  data.items.add(new File([blob], 'image.png', { type: 'image/png' }));
  const box = document.querySelector('textarea[name="message"]');
  box.focus();
  const init = { clipboardData: data, bubbles: true, cancelable: true };
  box.dispatchEvent(new ClipboardEvent('paste', init));
}"""


@pytest.fixture
def context(browser, site):
    context = browser.new_context(
        base_url=site.url, viewport={"width": 1200, "height": 800}, accept_downloads=True
    )
    yield context
    context.close()


def logged_in(context, site, user: str):
    return browser_steps.logged_in(context, site, user, USERS[user])


def chat_requests(stub, prompt: str) -> list[dict]:
    """The chat requests whose messages hold `prompt` (the title request aside)."""
    found = []
    for request in stub.requests:
        body = request.get("body")
        if not isinstance(body, dict) or "Write a short title" in json.dumps(body):
            continue
        if prompt in json.dumps(body.get("messages", body.get("input", ""))):
            found.append(body)
    return found


def parts_of(body: dict) -> list[dict]:
    """Every content part of the request's messages (a plain string as a text part)."""
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            parts.extend(p for p in content if isinstance(p, dict))
        elif isinstance(content, str):
            parts.append({"type": "text", "text": content})
    return parts


def saved_user_message(page, thread: str) -> dict:
    answer = page.request.get(f"/api/threads/{thread}/messages/")
    assert answer.ok, answer.text()
    return [m for m in answer.json()["results"] if m["role"] == "user"][-1]


def test_files_dropped_picked_and_pasted_go_with_the_message_and_open_after_a_reload(
    site, stub, context
):
    stub.script("Summarize these", tokens=["North ", "leads."])
    page = logged_in(context, site, "ivy")

    # Dropped on the composer, picked with the button, pasted into the message box.
    page.evaluate(DROP, ["[data-composer]", "notes.txt", "text/plain", NOTES])
    page.locator("input[type=file]").set_input_files(
        {"name": "table.csv", "mimeType": "text/csv", "buffer": TABLE.encode()}
    )
    page.evaluate(PASTE_IMAGE)
    chips = page.locator(CHIPS)
    expect(chips).to_have_count(3)
    expect(page.locator(f'{CHIPS}[data-upload-status="ready"]')).to_have_count(3, timeout=10000)
    expect(chips.nth(0)).to_contain_text("notes.txt")
    expect(chips.nth(0)).to_contain_text("66 B")
    expect(page.locator(f'{CHIPS}[data-upload-kind="image"] img')).to_have_count(1)
    expect(page.locator("[data-vision-hint]")).to_be_hidden()  # stub-model sees images

    send(page, "Summarize these files")
    thread = thread_id(page)
    page.locator(DONE).wait_for(timeout=15000)
    expect(chips).to_have_count(0)
    expect(page.locator('textarea[name="message"]')).to_have_value("")

    def check_message():
        user = page.locator('[data-role="user"]').last
        files = user.locator("[data-attachment-id]")
        expect(files).to_have_count(3)
        expect(user.locator('[data-attachment-kind="image"] img')).to_have_count(1)
        expect(user.locator('[data-attachment-kind="text"]')).to_have_count(2)
        expect(user.locator('[data-attachment-kind="text"]').first).to_contain_text("notes.txt")
        image = user.locator('[data-attachment-kind="image"] img')
        page.wait_for_function(
            "img => img.complete && img.naturalWidth === 64", arg=image.element_handle()
        )
        return user

    check_message()
    saved = saved_user_message(page, thread)
    assert [a["name"] for a in saved["attachments"]] == ["notes.txt", "table.csv", "image.png"]
    ids = {a["name"]: a["id"] for a in saved["attachments"]}

    # The model got the text files' text and the image as a data URL.
    (body,) = chat_requests(stub, "Summarize these files")
    parts = parts_of(body)
    text = " ".join(p.get("text", "") for p in parts)
    assert "revenue rose by 12 percent" in text and "north,112" in text
    images = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")

    page.reload()
    page.wait_for_selector("html[data-ready]")
    user = check_message()
    notes = user.locator(f'[data-attachment-id="{ids["notes.txt"]}"]')
    with page.expect_download() as download:
        notes.click()
    assert download.value.suggested_filename == "notes.txt"
    with open(download.value.path(), encoding="utf-8") as downloaded:
        assert downloaded.read() == NOTES

    with context.expect_page() as opened:
        user.locator(f'[data-attachment-id="{ids["image.png"]}"]').click()
    image_tab = opened.value
    image_tab.wait_for_load_state()
    assert image_tab.url.endswith(f"/api/attachments/{ids['image.png']}/content")
    assert image_tab.evaluate("document.contentType") == "image/png"
    image_tab.close()

    # Editing the message keeps its files: the page names none, so the server keeps them.
    stub.script("in one line", tokens=["North."])
    user.locator('[data-message-action="edit"]').click()
    user.locator('textarea[name="edit"]').fill("Summarize these files in one line")
    user.locator('[data-action="save-edit"]').click()
    expect(page.locator(DONE).filter(has_text="North.")).to_have_count(1, timeout=15000)
    expect(page.locator('[data-role="user"]').last.locator("[data-attachment-id]")).to_have_count(3)
    assert len(saved_user_message(page, thread)["attachments"]) == 3
    (edited,) = chat_requests(stub, "in one line")
    assert "revenue rose by 12 percent" in json.dumps(edited)


def test_a_file_over_the_limit_shows_the_refusal_on_its_chip_and_is_never_sent(site, stub, context):
    stub.script("Just text", tokens=["Fine."])
    page = logged_in(context, site, "jack")
    # Just over the limit, and far over: the page knows MAX_UPLOAD_BYTES and refuses both
    # before uploading (the server's own 413, with and without a length: test_attachments_server).
    page.locator("input[type=file]").set_input_files(
        [
            {"name": "over.txt", "mimeType": "text/plain", "buffer": b"x" * (LIMIT + 1000)},
            {"name": "huge.txt", "mimeType": "text/plain", "buffer": b"y" * (LIMIT * 6)},
        ]
    )
    refused = page.locator(f'{CHIPS}[data-upload-status="error"]')
    expect(refused).to_have_count(2, timeout=10000)
    for chip in (refused.nth(0), refused.nth(1)):
        expect(chip).to_contain_text("the limit is 49 KB")
    # Nothing uploads, so Send is free; the message goes without the refused files.
    send(page, "Just text, please")
    thread = thread_id(page)
    page.locator(DONE).wait_for(timeout=15000)
    assert saved_user_message(page, thread)["attachments"] == []
    expect(page.locator('[data-role="user"] [data-attachment-id]')).to_have_count(0)
    (body,) = chat_requests(stub, "Just text, please")
    assert "xxxx" not in json.dumps(body) and "yyyy" not in json.dumps(body)
    expect(refused).to_have_count(2)  # still there, saying why, until removed
    refused.first.locator('[data-action="remove-attachment"]').click()
    expect(refused).to_have_count(1)

    # Removing an uploaded file deletes it on the server.
    page.locator("input[type=file]").set_input_files(
        {"name": "draft.txt", "mimeType": "text/plain", "buffer": b"a draft"}
    )
    ready = page.locator(f'{CHIPS}[data-upload-status="ready"]')
    expect(ready).to_have_count(1, timeout=10000)
    uploaded = ready.get_attribute("data-upload-id")
    with page.expect_response(
        lambda r: r.request.method == "DELETE" and uploaded in r.url
    ) as deleted:
        ready.locator('[data-action="remove-attachment"]').click()
    assert deleted.value.status == 204
    expect(ready).to_have_count(0)
    assert page.request.get(f"/api/attachments/{uploaded}/content").status == 404


def test_an_image_for_a_model_without_vision_is_refused_and_stays_to_send_with_another(
    site, stub, context
):
    stub.script("What is in", tokens=["Two ", "boxes."])
    page = logged_in(context, site, "kate")
    page.locator(PICKER).select_option("second-model")
    page.evaluate(PASTE_IMAGE)
    expect(page.locator(f'{CHIPS}[data-upload-status="ready"]')).to_have_count(1, timeout=10000)
    hint = page.locator("[data-vision-hint]")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("Second model can't see images")

    send(page, "What is in this picture?")
    # Said once, on the message it refused.
    refused = page.locator('[data-role="user"][data-status="error"] .message__note')
    expect(refused).to_contain_text("second-model", timeout=10000)
    expect(page.locator("[data-notice]")).to_be_hidden()
    # Not worth retrying as it is: the chip stays (ready to send again) and so does the text.
    expect(page.locator(f'{CHIPS}[data-upload-status="ready"]')).to_have_count(1)
    expect(page.locator('textarea[name="message"]')).to_have_value("What is in this picture?")
    assert chat_requests(stub, "What is in this picture?") == []

    page.locator(PICKER).select_option("stub-model")
    expect(hint).to_be_hidden()
    page.locator('[data-action="send"]').click()
    page.locator(DONE).wait_for(timeout=15000)
    expect(page.locator(CHIPS)).to_have_count(0)
    user = page.locator('[data-role="user"]:not(.message--local)').last
    expect(user.locator('[data-attachment-kind="image"]')).to_have_count(1)
    (body,) = chat_requests(stub, "What is in this picture?")
    assert body["model"] == "stub-model"
    assert any(p.get("type") == "image_url" for p in parts_of(body))
