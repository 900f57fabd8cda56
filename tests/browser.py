"""Helpers for the browser tests (Playwright pages against a real daphne)."""

import re


def log_in(page, site, username: str, password: str) -> None:
    """Log in through the real login form; back on the chat page, ready to type."""
    page.goto(site.url + "/")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"], input[type="submit"]')
    page.wait_for_selector('textarea[name="message"]')


def send(page, text: str) -> None:
    """Type a message in the composer and send it with Enter."""
    page.fill('textarea[name="message"]', text)
    page.keyboard.press("Enter")


def thread_id(page) -> str:
    """The open thread's id, once the page's address names one."""
    page.wait_for_url(re.compile(r"/t/[0-9a-f-]{36}/"))
    return re.search(r"/t/([0-9a-f-]{36})/", page.url).group(1)


def logged_in(context, site, username: str, password: str):
    """A new tab of `context`, logged in, on the chat page once its scripts run."""
    page = context.new_page()
    log_in(page, site, username, password)
    page.wait_for_selector("html[data-ready]")
    return page


def session_state(browser, site, username: str, password: str) -> dict:
    """A logged-in session's cookies and storage, made once (a module's contexts start from
    it instead of logging in again)."""
    context = browser.new_context()
    page = context.new_page()
    log_in(page, site, username, password)
    state = context.storage_state()
    context.close()
    return state
