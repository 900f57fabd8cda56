"""Helpers for the browser tests (Playwright pages against a real daphne)."""


def log_in(page, site, username: str, password: str) -> None:
    """Log in through the real login form; back on the chat page, ready to type."""
    page.goto(site.url + "/")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"], input[type="submit"]')
    page.wait_for_selector('textarea[name="message"]')
