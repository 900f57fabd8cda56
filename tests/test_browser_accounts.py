"""Joining and getting back in, in Debian's chromium against a real daphne with sign-up and
password reset open: sign up and confirm by the mailed link, then reset the forgotten
password; and join by an operator's invite link. The mail is Django's console backend's, read
from the server's output as an operator on a laptop reads it. (The site has no users to
start with: making them costs a Django start.)"""

import re
import time

import pytest

from tests.servers import manage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.site({}, SIGNUP_ENABLED="on", PASSWORD_RESET_ENABLED="on"),
]

PASSPHRASE = "a long enough passphrase"
NEW = "another long passphrase"


def mailed_link(site, path: str, after: int) -> str:
    """The first link to `path` in mail the server printed after byte `after` of its output
    (waiting for it: the mail is written as the request is answered, the page may come
    first)."""
    pattern = re.compile(rf"{re.escape(site.url)}{re.escape(path)}\S+")
    deadline = time.monotonic() + 10
    while (found := pattern.search(site.log.read_bytes()[after:].decode(errors="replace"))) is None:
        assert time.monotonic() < deadline, f"no mail with a link to {path}"
        time.sleep(0.1)
    return found[0]


def printed(site) -> int:
    return site.log.stat().st_size


def fill_and_submit(page, fields: dict[str, str]) -> None:
    for name, value in fields.items():
        page.fill(f'input[name="{name}"]', value)
    page.keyboard.press("Enter")


def logs_in(page, site, username: str, password: str) -> None:
    page.goto(site.url + "/accounts/login/")
    fill_and_submit(page, {"username": username, "password": password})
    page.wait_for_selector('textarea[name="message"]')


def test_sign_up_confirm_by_the_mailed_link_then_reset_the_forgotten_password(site, page):
    page.goto(site.url + "/accounts/login/")
    page.click("text=Create an account")
    before = printed(site)
    fill_and_submit(
        page,
        {
            "username": "newcomer",
            "email": "newcomer@example.com",
            "password1": PASSPHRASE,
            "password2": PASSPHRASE,
        },
    )
    page.get_by_text("Check your email").wait_for()
    page.goto(mailed_link(site, "/accounts/signup/", before))
    page.get_by_text("Your email address is confirmed").wait_for()
    fill_and_submit(page, {"username": "newcomer", "password": PASSPHRASE})
    page.wait_for_selector('textarea[name="message"]')

    page.context.clear_cookies()  # another day, the password forgotten
    page.goto(site.url + "/accounts/login/")
    page.click("text=Forgot your password?")
    before = printed(site)
    fill_and_submit(page, {"email": "newcomer@example.com"})
    page.get_by_text("Check your email").wait_for()
    page.goto(mailed_link(site, "/accounts/reset/", before))
    page.get_by_text("Set a new password").wait_for()
    fill_and_submit(page, {"new_password1": NEW, "new_password2": NEW})
    page.get_by_text("Password set").wait_for()
    logs_in(page, site, "newcomer", NEW)


def test_an_invite_link_from_manage_py_makes_one_account(site, page):
    link = manage(site.env, "invite", "--note", "for Ivy", "--site", site.url).strip()
    page.goto(link)
    page.get_by_text("You are invited").wait_for()
    fill_and_submit(page, {"username": "ivy", "password1": PASSPHRASE, "password2": PASSPHRASE})
    page.get_by_text("Your account is made").wait_for()
    logs_in(page, site, "ivy", PASSPHRASE)
    page.goto(link)  # once only
    page.get_by_text("This invite was used already").wait_for()
