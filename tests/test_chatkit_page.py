"""`/chatkit/` in Debian's chromium: the page mounts the ChatKit web component against this
server, authorized by a client secret.

OpenAI's component loads from its CDN, which these machines cannot reach, so the browser is
served a stand-in at the CDN's address: a custom element that sends what ChatKit.js sends
through the `api.fetch` the page gave it. What is tested is ours: the page's options, the
CSP that lets the script in, the secret fetched and attached, and the reply streamed by the
real endpoint and saved where the chat page shows it.
"""

import pytest

from chat.views import CHATKIT_SCRIPT
from tests.browser import log_in

USER, PASSWORD = "kit", "kit-pw"
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.site({USER: PASSWORD})]

STAND_IN = """
customElements.define('openai-chatkit', class extends HTMLElement {
  setOptions(options) { this.options = options; this.dataset.ready = 'yes'; }
  async send(text) {
    const api = this.options.api;
    const body = JSON.stringify({
      type: 'threads.create',
      params: {input: {content: [{type: 'input_text', text}], attachments: [],
                       inference_options: {}}},
    });
    const response = await api.fetch(api.url, {
      method: 'POST', headers: {'Content-Type': 'application/json'}, body,
    });
    const events = (await response.text()).split('\\n')
      .filter((line) => line.startsWith('data: ')).map((line) => JSON.parse(line.slice(6)));
    return {status: response.status, events};
  }
});
"""


@pytest.fixture
def page(browser, site):
    context = browser.new_context(timezone_id="Pacific/Auckland")
    page = context.new_page()
    log_in(page, site, USER, PASSWORD)
    yield page
    context.close()


def test_the_page_mounts_chatkit_on_this_server_with_a_client_secret(page, site, stub):
    stub.script("hello from chatkit", tokens=["Hi", " from", " Django"])
    page.route(
        CHATKIT_SCRIPT,
        lambda route: route.fulfill(body=STAND_IN, content_type="application/javascript"),
    )
    sent = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/api/chatkit") else None)
    page.goto(site.url + "/chatkit/")
    page.wait_for_selector("[data-chatkit][data-ready]", state="attached")
    options = page.evaluate(
        "() => { const o = document.querySelector('[data-chatkit]').options;"
        " return {url: o.api.url, domainKey: o.api.domainKey, history: o.history.enabled} }"
    )
    assert options == {"url": "/api/chatkit", "domainKey": "local-dev", "history": True}
    assert page.is_hidden("[data-chatkit-status]")

    answer = page.evaluate(
        "() => document.querySelector('[data-chatkit]').send('hello from chatkit')"
    )
    assert answer["status"] == 200
    deltas = [
        e["update"]["delta"]
        for e in answer["events"]
        if e["type"] == "thread.item.updated" and "delta" in e["update"]
    ]
    assert "".join(deltas) == "Hi from Django"
    assert sent[0].headers["authorization"].startswith("Bearer cs_")
    assert sent[0].post_data_json["metadata"] == {"time_zone": "Pacific/Auckland"}
    assert "cookie" not in sent[0].headers  # the secret alone authorizes it

    thread_id = next(e["thread"]["id"] for e in answer["events"] if e["type"] == "thread.created")
    page.goto(site.url + f"/t/{thread_id}/")
    page.wait_for_selector('[data-role="assistant"][data-status="complete"]')
    assert page.inner_text('[data-role="assistant"] [data-content]').strip() == "Hi from Django"


def test_the_page_says_so_when_openais_cdn_cannot_be_reached(page, site):
    page.route(CHATKIT_SCRIPT, lambda route: route.abort())
    page.goto(site.url + "/chatkit/")
    page.wait_for_function(
        "() => document.querySelector('[data-chatkit-status]').textContent.includes('could not')"
    )
    assert "cdn.platform.openai.com" in page.inner_text("[data-chatkit-status]")


def test_the_page_needs_a_login(site):
    import httpx

    answer = httpx.get(site.url + "/chatkit/")
    assert answer.status_code == 302 and "/accounts/login/" in answer.headers["location"]
