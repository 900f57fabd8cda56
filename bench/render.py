"""Browser render benchmark: is the chat page responsive while a long reply streams in?

    .venv/bin/python -m bench.render [--kb 100] [--rate 500] [--idle-seconds 10]
    .venv/bin/python -m bench.render --screenshots docs/screenshots

A stub provider (its own process) streams a markdown reply of ``--kb`` KB (paragraphs, lists,
links, code blocks; ~4 characters a token) at ``--rate`` tokens a second into one daphne
process; Debian's chromium shows it on the real chat page. While the reply streams, a real
mouse click (CDP input, like a user's) lands on a probe button every 50 ms; its handler
records how long the click waited for the main thread (``performance.now() - event.timeStamp``).
Long tasks (PerformanceObserver ``longtask``) and the largest gap between animation frames are
recorded too. Four runs, side by side:

- ``idle``: the same page with nothing streaming (what the machine and Chromium cost anyway);
- ``none``: the same stream applied to the page's state, its model text never shown;
- ``plain``: the same stream with model text rendered as a plain text node (no markdown);
- ``markdown``: the product: incremental markdown, DOMPurify, highlighting, auto-scroll.

The product has no switch for the two baselines: for them the benchmark serves the page a
``static/chat/richtext.js`` whose ``createRichText`` does less (``BASELINE_RICHTEXT``).

Results are printed as a table and written to ``var/bench-render.json``;
docs/performance.md ("Browser render performance") explains the method and reports a run.

With ``--screenshots DIR`` it instead saves the page's main states as PNGs (empty, streaming,
error, phone width) for the docs, the model picker with a rated reply's feedback panel
(``models-feedback-{desktop,phone}-{light,dark}.png``), and a message sent with files beside a
composer attaching more (``attachments-{desktop,phone}.png``), and one thread in both themes at
both widths with the thread list and the 404 page (``finish-*.png``); ``--states`` picks which
sets (``main``, ``models-feedback``, ``attachments``, ``finish``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from scripts.processes import NO_USER_LIMITS, Daphne, prepare, server_env

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "var" / "bench-render.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
USER, PASSWORD = "bench-render", "bench-render-pw"
PROMPT = "bench-render: write the long answer"
# The start of chat.agent.TITLE_PROMPT: the product's request for a thread's title.
TITLE_PROMPT = "Write a short title"
CLICK_EVERY_S = 0.05
# The stub sleeps between chunks, and an asyncio sleep here costs ~2.3 ms however short it is
# asked to be (about 430 chunks/s at most): two tokens a chunk reach 500 tok/s with room to
# spare. With BUFFER_SIZE=5 the product sends the browser one frame per ~2 tokens either way.
TOKENS_PER_CHUNK = 2
VIEWPORT = {"width": 1200, "height": 800}
PHONE = {"width": 390, "height": 844}
DONE = '[data-role="assistant"][data-status="complete"]'

# Runs before the page's own scripts: a probe button whose click handler records how long the
# click waited, long tasks, and animation-frame gaps. `window.__bench` holds the numbers.
PROBE = """
window.__bench = { clicks: [], longtasks: [], frames: 0, maxFrameGap: 0, since: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__bench.longtasks.push([e.startTime, e.duration]);
}).observe({ type: 'longtask', buffered: true });
let last = 0;
function tick(now) {
  if (last && now - last > window.__bench.maxFrameGap) window.__bench.maxFrameGap = now - last;
  last = now;
  window.__bench.frames += 1;
  requestAnimationFrame(tick);
}
requestAnimationFrame(tick);
window.__benchReset = () => {
  Object.assign(window.__bench, {
    clicks: [], longtasks: [], frames: 0, maxFrameGap: 0, since: performance.now(),
  });
  last = 0;
};
addEventListener('DOMContentLoaded', () => {
  const probe = document.createElement('button');
  probe.textContent = 'probe';
  probe.dataset.benchProbe = '';
  probe.style.cssText =
    'position:fixed;right:4px;bottom:4px;width:48px;height:28px;z-index:99;opacity:.6';
  probe.addEventListener('click', (event) => {
    window.__bench.clicks.push(performance.now() - event.timeStamp);
  });
  document.body.append(probe);
});
"""

# The baselines' stand-in for static/chat/richtext.js: the real module (served under another
# URL) with `createRichText` replaced, since a module's own export wins over `export *`.
# `plain` shows model text as one text node, as user text is shown; `none` never shows it.
# Either drops the `markdown` class that message.js gave the container, so the page styles the
# text as plain (pre-wrap, the streaming cursor).
BASELINE_RICHTEXT = """
export * from './richtext.js?bench=real';
const MODE = '%s';
export function createRichText(container) {
  container.classList.remove('markdown');
  const node = document.createTextNode('');
  container.replaceChildren(node);
  let shown = '';
  return {
    update(next) {
      if (MODE === 'plain') {
        if (next.startsWith(shown)) node.appendData(next.slice(shown.length));
        else node.data = next;
      }
      shown = next;
    },
    text: () => shown,
  };
}
"""


def is_richtext(url: str) -> bool:
    """The page's own request for richtext.js (not the baseline's for the real one)."""
    parts = urlsplit(url)
    return parts.path.endswith("/static/chat/richtext.js") and not parts.query


def reply_markdown(kb: int) -> str:
    """A long, realistic reply: headings, paragraphs with inline markup, lists, code blocks."""
    words = (
        "the stream renders each settled block once while the live tail is parsed again "
        "per animation frame so a long answer stays cheap to show and the page keeps "
        "answering clicks scrolls and keys without waiting for the reply to end"
    ).split()
    parts: list[str] = []
    i = 0
    while sum(map(len, parts)) < kb * 1000:
        sentence = " ".join(words[(i * 7 + k) % len(words)] for k in range(60))
        parts.append(f"## Section {i}\n\n")
        parts.append(
            f"Here is **point {i}**, with `inline_code({i})` and a "
            f"[reference](https://example.com/docs/{i}). {sentence}.\n\n"
        )
        parts.append(
            f"- first item of list {i}: {sentence[:80]}\n"
            f"- second item with *emphasis* and `x = {i}`\n"
            f"- third item: {sentence[80:160]}\n\n"
        )
        body = "\n".join(f"    total += values[{k}] * {i}  # step {k}" for k in range(8))
        parts.append(
            f"```python\ndef compute_{i}(values):\n    total = 0\n{body}\n    return total\n```\n\n"
        )
        parts.append(f"> Note {i}: {sentence[:120]}.\n\n{sentence}.\n\n")
        i += 1
    return "".join(parts)


def tokenize(text: str) -> list[str]:
    """Model-like tokens: about four characters each, whitespace attached to the next one."""
    return re.findall(r"\s*\S{1,4}|\s+$", text, flags=re.S) or [text]


def chunked(tokens: list[str]) -> list[str]:
    """Tokens in stream chunks of TOKENS_PER_CHUNK, as a busy provider sends them."""
    size = TOKENS_PER_CHUNK
    return ["".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]


STUB_KEY = "bench"
STUB_AUTH = {"Authorization": f"Bearer {STUB_KEY}"}


@contextlib.contextmanager
def stub_process() -> Iterator[str]:
    """The stub provider in its own process (so it never waits on this one's GIL): its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.stub_provider", "--port", "0", "--api-key", STUB_KEY],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        if not line.startswith("STUB_URL="):
            raise RuntimeError(f"stub provider did not start: {line!r}")
        yield line.removeprefix("STUB_URL=")
    finally:
        process.terminate()
        process.wait(10)


def stub_script(
    url: str, *, title: list[str] | tuple[str, ...] = ("Render ", "benchmark"), **script: Any
) -> None:
    """Register a scripted reply on the stub (its control API).

    The product asks a real provider for a thread title after the first reply, with the first
    message in the prompt, so that request would match the reply's script too (and stream the
    whole long reply again, during the next run): a title script registered after it wins.
    """
    control = url.removesuffix("/v1") + "/_stub/scripts"
    for body in (script, {"match": TITLE_PROMPT, "tokens": list(title)}):
        httpx.post(control, json=body, timeout=10, headers=STUB_AUTH).raise_for_status()


@contextlib.contextmanager
def product(stub_url: str, **settings: str) -> Iterator[Daphne]:
    """One daphne process on a fresh SQLite database, the stub as its model (``settings``:
    more environment, e.g. ``AGENT_MODELS``)."""
    with tempfile.TemporaryDirectory(prefix="bench-render-") as var:
        env = server_env(
            AGENT_PROVIDER="compatible",
            AGENT_MODEL="stub-model",
            OPENAI_BASE_URL=stub_url,
            OPENAI_API_KEY=STUB_KEY,
            CHAT_VAR_DIR=var,
            STREAM_TIMEOUT="600",
            **NO_USER_LIMITS,
            **settings,
        )
        prepare(env, {USER: PASSWORD})
        server = Daphne(env).start()
        try:
            yield server
        finally:
            server.stop()


async def logged_in_state(browser: Browser, site: Daphne) -> dict[str, Any]:
    """Cookies of a logged-in session, for every context of the run."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(site.url + "/accounts/login/")
    await page.fill('input[name="username"]', USER)
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_selector("html[data-ready]")
    state = await context.storage_state()
    await context.close()
    return state


async def open_page(
    browser: Browser,
    site: Daphne,
    state: dict[str, Any],
    *,
    mode: str,
    viewport=VIEWPORT,
    color_scheme: str = "light",
    path: str = "/",
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(
        storage_state=state, base_url=site.url, viewport=viewport, color_scheme=color_scheme
    )
    await context.add_init_script(PROBE)
    if mode in ("plain", "none"):
        body = BASELINE_RICHTEXT % mode
        await context.route(
            is_richtext,
            lambda route: route.fulfill(status=200, content_type="text/javascript", body=body),
        )
    page = await context.new_page()
    await page.goto(path)
    await page.wait_for_selector("html[data-ready]")
    return context, page


async def click_until(page: Page, done: asyncio.Future | float) -> int:
    """Click the probe every 50 ms until `done` resolves (or that many seconds pass)."""
    box = await page.locator("[data-bench-probe]").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    loop = asyncio.get_running_loop()
    deadline = loop.time() + done if isinstance(done, float) else None
    clicks = 0
    while (deadline is None and not done.done()) or (deadline and loop.time() < deadline):
        started = loop.time()
        await page.mouse.click(x, y)
        clicks += 1
        await asyncio.sleep(max(0.0, CLICK_EVERY_S - (loop.time() - started)))
    return clicks


def summarize(bench: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Click delays (ms) as percentiles, long tasks, frame gaps."""
    delays = sorted(bench["clicks"])
    since = bench["since"]
    longtasks = [d for start, d in bench["longtasks"] if start >= since]

    def pct(p: float) -> float:
        return round(delays[min(len(delays) - 1, int(p / 100 * len(delays)))], 1)

    return {
        "seconds": round(seconds, 2),
        "clicks": len(delays),
        "click_p50_ms": pct(50) if delays else None,
        "click_p95_ms": pct(95) if delays else None,
        "click_p99_ms": pct(99) if delays else None,
        "click_max_ms": round(delays[-1], 1) if delays else None,
        "click_mean_ms": round(statistics.fmean(delays), 1) if delays else None,
        "clicks_over_100ms": sum(d > 100 for d in delays),
        "longtasks": len(longtasks),
        "longtask_ms_total": round(sum(longtasks), 1),
        "longtask_max_ms": round(max(longtasks), 1) if longtasks else 0.0,
        "frames_per_s": round(bench["frames"] / seconds, 1) if seconds else None,
        "max_frame_gap_ms": round(bench["maxFrameGap"], 1),
    }


async def run_idle(browser: Browser, site: Daphne, state: dict[str, Any], seconds: float):
    context, page = await open_page(browser, site, state, mode="markdown")
    try:
        await page.evaluate("window.__benchReset()")
        started = time.monotonic()
        await click_until(page, seconds)
        elapsed = time.monotonic() - started
        return summarize(await page.evaluate("window.__bench"), elapsed)
    finally:
        await context.close()


async def run_stream(
    browser: Browser, site: Daphne, state: dict[str, Any], mode: str, text: str, tokens: int
):
    context, page = await open_page(browser, site, state, mode=mode)
    try:
        await page.fill('textarea[name="message"]', PROMPT)
        await page.keyboard.press("Enter")
        await page.wait_for_selector('[data-role="assistant"][data-status="streaming"]')
        await page.evaluate("window.__benchReset()")
        started = time.monotonic()
        done = asyncio.ensure_future(
            page.wait_for_selector('[data-role="assistant"][data-status="complete"]', timeout=0)
        )
        await click_until(page, done)
        await done
        elapsed = time.monotonic() - started
        result = summarize(await page.evaluate("window.__bench"), elapsed)
        thread = re.search(r"/t/([0-9a-f-]{36})/", page.url).group(1)
        answer = await page.request.get(f"/api/threads/{thread}/messages/")
        saved = (await answer.json())["results"][-1]
        result["reply_chars"] = len(saved["content"])
        result["reply_matches"] = saved["content"] == text
        result["metrics"] = saved.get("metrics")
        if saved.get("metrics"):
            result["tokens_per_s"] = round(tokens / saved["metrics"]["elapsedSeconds"], 1)
        result["dom_nodes"] = await page.evaluate("document.querySelectorAll('*').length")
        return result
    finally:
        await context.close()


async def calibrate(
    browser: Browser, site: Daphne, state: dict[str, Any], stub_url: str, rate: float
) -> float:
    """The stub delay that makes the whole path (stub, daphne, browser) run at `rate` tok/s.

    The stub's sleep has overhead, and it waits when the product reads slowly, so a delay of
    TOKENS_PER_CHUNK * 1000/rate ms streams slower than `rate`: measure a short reply through
    the product and scale the delay.
    """
    delay = TOKENS_PER_CHUNK * 1000 / rate
    tokens = tokenize(reply_markdown(20))
    for attempt in range(4):
        match = f"calibrate-{attempt}"
        stub_script(stub_url, match=match, tokens=chunked(tokens), delay_ms=delay)
        context, page = await open_page(browser, site, state, mode="none")
        try:
            await page.fill('textarea[name="message"]', match)
            await page.keyboard.press("Enter")
            await page.wait_for_selector('[data-role="assistant"][data-status="complete"]')
            thread = re.search(r"/t/([0-9a-f-]{36})/", page.url).group(1)
            answer = await page.request.get(f"/api/threads/{thread}/messages/")
            metrics = (await answer.json())["results"][-1]["metrics"]
            achieved = len(tokens) / metrics["elapsedSeconds"]
        finally:
            await context.close()
        print(f"calibration: {delay:.2f} ms a chunk gives {achieved:.0f} tok/s", flush=True)
        if abs(achieved - rate) / rate < 0.05:
            break
        delay *= achieved / rate
    return delay


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    text = reply_markdown(args.kb)
    tokens = tokenize(text)
    assert "".join(tokens) == text
    with stub_process() as stub_url, product(stub_url) as site:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            state = await logged_in_state(browser, site)
            delay = await calibrate(browser, site, state, stub_url, args.rate)
            stub_script(stub_url, match="bench-render", tokens=chunked(tokens), delay_ms=delay)
            version = browser.version
            runs = {"idle": await run_idle(browser, site, state, args.idle_seconds)}
            for mode in ("none", "plain", "markdown"):
                print(f"streaming {len(text) / 1000:.0f} KB with {mode} rendering …", flush=True)
                runs[mode] = await run_stream(browser, site, state, mode, text, len(tokens))
            await browser.close()
    return {
        "reply_kb": round(len(text) / 1000, 1),
        "reply_tokens": len(tokens),
        "target_tokens_per_s": args.rate,
        "stub_delay_ms": round(delay, 3),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "chromium": version,
        "runs": runs,
    }


def report(result: dict[str, Any]) -> str:
    """The runs side by side as a markdown table, with the product's ratios to the baselines."""
    runs = result["runs"]
    modes = ("idle", "none", "plain", "markdown")
    rows = [
        ("clicks measured", "clicks"),
        ("click wait p50 (ms)", "click_p50_ms"),
        ("click wait p95 (ms)", "click_p95_ms"),
        ("click wait p99 (ms)", "click_p99_ms"),
        ("click wait max (ms)", "click_max_ms"),
        ("clicks over 100 ms", "clicks_over_100ms"),
        ("long tasks", "longtasks"),
        ("long-task time (ms)", "longtask_ms_total"),
        ("longest task (ms)", "longtask_max_ms"),
        ("animation frames/s", "frames_per_s"),
        ("largest frame gap (ms)", "max_frame_gap_ms"),
        ("run length (s)", "seconds"),
    ]

    def ratio(a: Any, b: Any) -> str:
        return (
            f"{a / b:.2f}"
            if isinstance(a, int | float) and isinstance(b, int | float) and b
            else "–"
        )

    lines = [
        "| | idle page | stream, not rendered | stream, plain text | stream, markdown "
        "(product) | markdown / not rendered | markdown / idle |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, key in rows:
        values = [runs[m].get(key) for m in modes]
        cells = " | ".join(str(v) for v in values)
        lines.append(
            f"| {label} | {cells} | {ratio(values[3], values[1])} | {ratio(values[3], values[0])} |"
        )
    for mode in modes[1:]:
        m = runs[mode].get("metrics") or {}
        lines.append(
            f"\n{mode}: {runs[mode]['reply_chars']} chars, saved text equals the script: "
            f"{runs[mode]['reply_matches']}, {result['reply_tokens']} tokens in "
            f"{m.get('elapsedSeconds')} s ({runs[mode].get('tokens_per_s')} tok/s), "
            f"{runs[mode]['dom_nodes']} DOM nodes at the end"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- screenshots


async def screenshots(directory: Path) -> None:
    """The page's main states as PNGs: empty, streaming, error, phone width."""
    answer = (
        "Streaming works token by token. Here is a short example:\n\n"
        '```python\ndef greet(name: str) -> str:\n    return f"Hello, {name}!"\n```\n\n'
        "- Replies survive **reloads** and lost connections\n"
        "- Stop in one tab stops every tab\n\n"
        "See the [docs](https://example.com/docs) for more. " + "More words follow. " * 60
    )
    with stub_process() as stub_url, product(stub_url) as site:
        stub_script(stub_url, match="Show me", tokens=tokenize(answer), delay_ms=40)
        stub_script(
            stub_url, match="Break", tokens=["Let me ", "think about ", "that"], error_after=2
        )
        stub_script(stub_url, match="phone", tokens=tokenize(answer[:400]), delay_ms=5)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            state = await logged_in_state(browser, site)

            context, page = await open_page(browser, site, state, mode="markdown")
            await page.evaluate("document.querySelector('[data-bench-probe]')?.remove()")
            await page.screenshot(path=directory / "empty.png")
            await page.fill('textarea[name="message"]', "Show me how streaming works")
            await page.keyboard.press("Enter")
            await page.locator('[data-status="streaming"]').filter(has_text="reloads").wait_for()
            await page.wait_for_timeout(400)
            await page.screenshot(path=directory / "streaming.png")
            await page.locator(DONE).wait_for(timeout=60000)

            await page.click('[data-action="new-thread"]')
            await page.fill('textarea[name="message"]', "Break the provider")
            await page.keyboard.press("Enter")
            await page.locator('[data-role="assistant"][data-status="error"]').wait_for()
            await context.set_offline(True)
            await page.wait_for_selector('[data-connection="offline"]')
            await page.wait_for_timeout(300)
            await page.screenshot(path=directory / "error.png")
            await context.set_offline(False)
            await context.close()

            context, page = await open_page(browser, site, state, mode="markdown", viewport=PHONE)
            await page.evaluate("document.querySelector('[data-bench-probe]')?.remove()")
            await page.fill('textarea[name="message"]', "A question from my phone")
            await page.keyboard.press("Enter")
            await page.locator(DONE).wait_for(timeout=60000)
            await page.wait_for_timeout(300)
            await page.screenshot(path=directory / "phone.png")
            await page.click('[data-action="toggle-sidebar"]')
            await page.wait_for_timeout(400)
            await page.screenshot(path=directory / "phone-threads.png")
            await context.close()
            await browser.close()
    print(f"screenshots written to {directory}")


async def models_feedback_screenshots(directory: Path) -> None:
    """The model picker with two models, and a reply rated down with its feedback panel open
    (a tag pressed, a comment typed): desktop and phone, light and dark."""
    answer = (
        "The offside rule, briefly:\n\n"
        "- A player is **offside** when nearer the opponents' goal line than both the ball "
        "and the second-last opponent, as the ball is played to them.\n"
        "- Being there is no offence; *taking part in play* from there is.\n\n"
        "The referee awards an indirect free kick."
    )
    models = {
        "AGENT_MODELS": "stub-model,second-model",
        "AGENT_MODEL_LABELS": "stub-model=Stub model,second-model=Second model",
    }
    with stub_process() as stub_url, product(stub_url, **models) as site:
        stub_script(
            stub_url,
            match="offside",
            tokens=tokenize(answer),
            delay_ms=5,
            title=["The ", "offside ", "rule"],
        )
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            state = await logged_in_state(browser, site)
            context, page = await open_page(browser, site, state, mode="markdown")
            await page.evaluate("document.querySelector('[data-bench-probe]')?.remove()")
            await page.select_option("[data-model-picker]", "second-model")
            await page.fill('textarea[name="message"]', "Explain the offside rule in two lines")
            await page.keyboard.press("Enter")
            await page.locator(DONE).wait_for(timeout=60000)
            path = urlsplit(page.url).path
            await page.click(f'{DONE} [data-action="feedback-down"]')
            await page.locator("[data-feedback-panel]").wait_for()
            await context.close()

            for name, viewport in (("desktop", {"width": 1280, "height": 800}), ("phone", PHONE)):
                for scheme in ("light", "dark"):
                    context, page = await open_page(
                        browser,
                        site,
                        state,
                        mode="markdown",
                        viewport=viewport,
                        color_scheme=scheme,
                        path=path,
                    )
                    await page.evaluate("document.querySelector('[data-bench-probe]')?.remove()")
                    reply = page.locator(DONE).last
                    await reply.locator('[data-action="feedback-edit"]').click()
                    panel = reply.locator("[data-feedback-panel]")
                    await panel.locator('[data-feedback-tag="Inaccurate"]').click()
                    await panel.locator('textarea[name="feedback-comment"]').fill(
                        "It leaves out the halfway line."
                    )
                    await panel.scroll_into_view_if_needed()
                    await page.wait_for_timeout(300)
                    target = directory / f"models-feedback-{name}-{scheme}.png"
                    await page.screenshot(path=target)
                    await context.close()
            await browser.close()
    print(f"model and feedback screenshots written to {directory}")


REMOVE_PROBE = "document.querySelector('[data-bench-probe]')?.remove()"


async def finish_screenshots(directory: Path) -> None:
    """One thread (a long question folded, a reply with a tool step, a list, math and a code
    block, rated; pinned) in both themes at both widths (``finish-{desktop,phone}-{light,dark}
    .png``), the thread list in its groups open on a phone in the dark
    (``finish-phone-threads-dark.png``), a reply cut by the token limit and the same reply
    continued (``finish-continue-{cut,done}-{light,dark}.png``), and the 404 page
    (``finish-404-dark.png``). The theme is the system's (the browser's colour scheme)."""
    question = (
        "Here is the log from last night's run; what failed, and how many retries did it take?\n"
        + "\n".join(f"02:{i:02d} worker-{i % 3} retry {i}: connection reset" for i in range(24))
    )
    answer = (
        "The run failed on **connection resets** from one worker pool; it took 24 retries.\n\n"
        "- Every retry came from `worker-0`, `worker-1` or `worker-2`\n"
        "- They were 1 minute apart, so the backoff never grew\n\n"
        "A backoff that grows waits $t_n = \\min(60, 2^n)\\cdot u$ seconds before retry $n$, "
        "with $u$ drawn from $[0.5, 1]$:\n\n"
        "```python\nimport random\n\n\ndef backoff(attempt: int) -> float:\n"
        '    """Seconds to wait before retry `attempt`."""\n'
        "    return min(60, 2**attempt) * random.uniform(0.5, 1.0)\n```\n"
    )
    # A story cut by the token limit (REPLY_MAX_TOKENS counts the stub's chunks), then continued.
    story = [
        f"{sentence} "
        for sentence in (
            "The lighthouse keeper counted the ships each night.",
            "In spring there were few; by August the bay was full.",
            "One night a ship came in with no lights at all.",
            "She lit the second lamp, the one kept for storms.",
            "The ship turned, slowly, and found the channel.",
            "In the morning its captain climbed the hill to thank her.",
            "He had been steering by the stars since the harbour lights went dark.",
        )
    ]
    with (
        stub_process() as stub_url,
        product(
            stub_url,
            AGENT_TOOLS="chat.tools.calculate",
            AGENT_MODELS="stub-model,second-model",
            AGENT_MODEL_LABELS="stub-model=Stub model,second-model=Second model",
            REPLY_MAX_TOKENS="40",
        ) as site,
    ):
        stub_script(
            stub_url,
            match="last night's run",
            tool_calls=[[{"name": "calculate", "arguments": {"expression": "24 * 1"}}]],
            tokens=[answer[i : i + 30] for i in range(0, len(answer), 30)],
            delay_ms=2,
            title=["Last ", "night's ", "failed ", "run"],
        )
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            state = await logged_in_state(browser, site)
            context, page = await open_page(browser, site, state, mode="markdown")
            await page.evaluate("document.querySelector('[data-bench-probe]')?.remove()")
            await page.fill('textarea[name="message"]', question)
            await page.keyboard.press("Enter")
            await page.locator(DONE).wait_for(timeout=60000)
            await page.click(f'{DONE} [data-action="feedback-up"]')
            path = urlsplit(page.url).path
            await page.click('[data-thread-list] [data-thread-action="pin"]')
            await page.locator('[data-thread-group="pinned"]').wait_for()
            await context.close()

            for name, viewport in (("desktop", {"width": 1280, "height": 800}), ("phone", PHONE)):
                for scheme in ("light", "dark"):
                    context, page = await open_page(
                        browser,
                        site,
                        state,
                        mode="markdown",
                        viewport=viewport,
                        color_scheme=scheme,
                        path=path,
                    )
                    await page.evaluate("document.querySelector('[data-bench-probe]')?.remove()")
                    await page.wait_for_timeout(300)
                    await page.screenshot(path=directory / f"finish-{name}-{scheme}.png")
                    if name == "phone" and scheme == "dark":
                        await page.click('[data-action="toggle-sidebar"]')
                        await page.wait_for_timeout(400)
                        await page.screenshot(path=directory / "finish-phone-threads-dark.png")
                        await page.goto("/t/00000000-0000-0000-0000-000000000000/")
                        await page.evaluate(REMOVE_PROBE)
                        await page.screenshot(path=directory / "finish-404-dark.png")
                    await context.close()

            # The cut reply (a story at 4 words a token: 40 tokens end mid-story), then continued.
            stub_script(
                stub_url,
                match="lighthouse story",
                tokens=[word + " " for line in story for word in line.split()],
                delay_ms=2,
                title=["The ", "lighthouse"],
            )
            stub_script(
                stub_url,
                match="Continue exactly",
                tokens=[word + " " for line in story for word in line.split()][40:],
                delay_ms=2,
                title=["The ", "lighthouse"],
            )
            for scheme in ("light", "dark"):
                context, page = await open_page(
                    browser, site, state, mode="markdown", color_scheme=scheme
                )
                await page.evaluate(REMOVE_PROBE)
                await page.fill('textarea[name="message"]', "Tell me a short lighthouse story.")
                await page.keyboard.press("Enter")
                cut = page.locator('[data-role="assistant"][data-truncated="true"]')
                await cut.wait_for(timeout=60000)
                await page.wait_for_timeout(300)
                await page.screenshot(path=directory / f"finish-continue-cut-{scheme}.png")
                await cut.locator('[data-action="continue"]').click()
                await page.locator(f"{DONE}:not([data-truncated])").wait_for(timeout=60000)
                await page.wait_for_timeout(300)
                await page.screenshot(path=directory / f"finish-continue-done-{scheme}.png")
                await context.close()
            await browser.close()
    print(f"finish screenshots written to {directory}")


# A chart drawn in the page and attached as a PNG (what a pasted screenshot would be).
CHART_FILE = """async ([name, width, height]) => {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext('2d');
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, width, height);
  const bars = [0.45, 0.62, 0.38, 0.81, 0.7, 0.92];
  const step = width / (bars.length + 1);
  bars.forEach((value, i) => {
    g.fillStyle = i === bars.length - 1 ? '#f59e0b' : '#2f62d8';
    const h = value * (height - 40);
    g.fillRect(step * (i + 0.6), height - 20 - h, step * 0.7, h);
  });
  g.fillStyle = '#1d232b';
  g.fillRect(step * 0.4, height - 20, width - step * 0.8, 2);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  const data = new DataTransfer();
  data.items.add(new File([blob], name, { type: 'image/png' }));
  const box = document.querySelector('textarea[name="message"]');
  box.focus();
  const init = { clipboardData: data, bubbles: true, cancelable: true };
  box.dispatchEvent(new ClipboardEvent('paste', init));
}"""
NOTES_MD = (
    "# Sales review, Q3\n\n- North: 112 (+12%)\n- South: 97 (-3%)\n- West: 130 (+21%)\n\n"
    "The West's new stores opened in July.\n"
)


async def attach_composer_files(page: Page) -> None:
    """The composer mid-way: an image and a text file uploaded, a log still uploading."""
    await page.evaluate(CHART_FILE, ["revenue.png", 640, 400])
    await page.locator("input[type=file]").set_input_files(
        {"name": "q3-notes.md", "mimeType": "text/markdown", "buffer": NOTES_MD.encode()}
    )
    await page.locator('[data-uploads] li[data-upload-status="ready"]').nth(1).wait_for()
    # A slow uplink (Chromium's own throttling) so the log's progress shows part way.
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 64_000},
    )
    log = "".join(
        f"2026-10-0{i % 9 + 1} 12:00:{i % 60:02d} GET /api/orders 200\n" for i in range(9000)
    )
    await page.locator("input[type=file]").set_input_files(
        {"name": "server-access.log", "mimeType": "text/plain", "buffer": log.encode()}
    )
    await page.wait_for_function(
        """() => {
          const meta = document.querySelector('[data-upload-status="uploading"] .upload__meta');
          return meta && /\\b[3-9]\\d%/.test(meta.textContent);
        }""",
        timeout=30000,
    )
    await page.fill('textarea[name="message"]', "And how does this log compare?")


async def attachments_screenshots(directory: Path) -> None:
    """A message sent with a chart and a notes file (its thumbnail and chip), a reply, and the
    composer attaching more (an image and a file ready, a log uploading): desktop and phone."""
    answer = (
        "From the chart and your notes:\n\n"
        "- **West** leads at 130 (+21%), helped by the July openings.\n"
        "- **North** grew 12%; **South** slipped 3%.\n\n"
        "The last bar (orange) is the West."
    )
    with (
        stub_process() as stub_url,
        product(stub_url, AGENT_VISION_MODELS="stub-model") as site,
    ):
        stub_script(
            stub_url,
            match="Summarize",
            tokens=tokenize(answer),
            delay_ms=5,
            title=["Q3 ", "sales ", "review"],
        )
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            state = await logged_in_state(browser, site)
            context, page = await open_page(browser, site, state, mode="markdown")
            await page.evaluate("document.querySelector('[data-bench-probe]')?.remove()")
            await page.evaluate(CHART_FILE, ["revenue-by-region.png", 960, 600])
            await page.locator("input[type=file]").set_input_files(
                {"name": "q3-notes.md", "mimeType": "text/markdown", "buffer": NOTES_MD.encode()}
            )
            await page.locator('[data-uploads] li[data-upload-status="ready"]').nth(1).wait_for()
            await page.fill('textarea[name="message"]', "Summarize the chart and my notes")
            await page.keyboard.press("Enter")
            await page.locator(DONE).wait_for(timeout=60000)
            path = urlsplit(page.url).path
            await context.close()

            for name, viewport in (("desktop", {"width": 1280, "height": 800}), ("phone", PHONE)):
                context, page = await open_page(
                    browser, site, state, mode="markdown", viewport=viewport, path=path
                )
                await page.evaluate("document.querySelector('[data-bench-probe]')?.remove()")
                await page.wait_for_function(
                    "() => [...document.querySelectorAll('.attachment-image__img')]"
                    ".every((img) => img.complete && img.naturalWidth > 0)"
                )
                await attach_composer_files(page)
                await page.evaluate("document.querySelector('[data-scroller]').scrollTop = 1e6")
                await page.wait_for_timeout(200)
                await page.screenshot(path=directory / f"attachments-{name}.png")
                await context.close()
            await browser.close()
    print(f"attachment screenshots written to {directory}")


def _stop_on_sigterm() -> None:
    # SIGTERM unwinds like Ctrl+C, so the context managers stop daphne and the stub.
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.render", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kb", type=int, default=100, help="reply size in KB (default 100)")
    parser.add_argument("--rate", type=float, default=500, help="tokens a second (default 500)")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--screenshots", type=Path, help="save the page's states as PNGs here")
    parser.add_argument(
        "--states",
        default="main,models-feedback,attachments,finish",
        help="with --screenshots: which sets, of main,models-feedback,attachments,finish (all)",
    )
    args = parser.parse_args(argv)
    _stop_on_sigterm()
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
        states = {s.strip() for s in args.states.split(",")}
        if "main" in states:
            asyncio.run(screenshots(args.screenshots))
        if "models-feedback" in states:
            asyncio.run(models_feedback_screenshots(args.screenshots))
        if "attachments" in states:
            asyncio.run(attachments_screenshots(args.screenshots))
        if "finish" in states:
            asyncio.run(finish_screenshots(args.screenshots))
        return
    result = asyncio.run(benchmark(args))
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"\nwritten to {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
