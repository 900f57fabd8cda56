"""The user's own account: the settings page (their instructions to the agent, the theme, the
password through Django's own view), the export of everything they have, and deleting it all;
and, when an operator opens them, sign-up (confirmed by an emailed link, the admins told) and
password reset by email, both throttled; and an operator's invite link, which makes one
account whether or not sign-up is open.

Views decode and hand over: the writes are services.py's (`preferences_set`,
`account_delete`), the export is api/export.py's. A password change goes through Django's
`PasswordChangeView`, so its session is kept (`update_session_auth_hash`) while every other
session of the user, and every socket and stream opened with one, ends on every process
(standing.py hears the user saved).
"""

import functools
import time
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm, UserCreationForm
from django.contrib.auth.tokens import default_token_generator
from django.contrib.auth.views import (
    PasswordChangeView,
    PasswordResetCompleteView,
    PasswordResetConfirmView,
    PasswordResetDoneView,
    PasswordResetView,
)
from django.core.cache import cache
from django.core.mail import mail_admins, send_mail
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse, reverse_lazy
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django.views.decorators.http import require_POST

from chat import proxy, selectors, services
from chat.api import export
from chat.engine import generation
from chat.errors import ChatError
from chat.models import Message, Preferences

User = get_user_model()


class PreferencesForm(forms.Form):
    """The user's instructions to the agent and the page's theme."""

    instructions = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        label="Your instructions to the assistant",
    )
    theme = forms.ChoiceField(
        choices=Preferences.Theme.choices, widget=forms.RadioSelect, label="Theme"
    )

    def clean_instructions(self) -> str:
        text = self.cleaned_data["instructions"].strip()
        limit = settings.USER_INSTRUCTIONS_CHARS
        if len(text) > limit:
            raise forms.ValidationError(
                f"At most {limit} characters: these are {len(text)}. Shorten them and save again."
            )
        return text


class DeleteForm(forms.Form):
    """Deleting the account: the user types their username to confirm."""

    confirm = forms.CharField(label="Type your username to confirm", strip=True)

    def __init__(self, *args: Any, username: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.username = username

    def clean_confirm(self) -> str:
        if self.cleaned_data["confirm"] != self.username:
            raise forms.ValidationError(f"Type {self.username} exactly to delete the account.")
        return self.cleaned_data["confirm"]


def _page(request: HttpRequest, status: int = 200, **forms_given: Any) -> HttpResponse:
    """The settings page with its forms (those given keep what was posted, and its errors)."""
    prefs = selectors.preferences_of(user=request.user)
    context = {
        "preferences_form": forms_given.get("preferences_form")
        or PreferencesForm(initial={"instructions": prefs.instructions, "theme": prefs.theme}),
        "password_form": forms_given.get("password_form") or PasswordChangeForm(request.user),
        "delete_form": forms_given.get("delete_form")
        or DeleteForm(username=request.user.get_username()),
        "instructions_limit": settings.USER_INSTRUCTIONS_CHARS,
    }
    return render(request, "chat/settings.html", context, status=status)


@login_required
def settings_page(request: HttpRequest) -> HttpResponse:
    """`/settings/`: the page; a POST saves the instructions and the theme."""
    if request.method != "POST":
        return _page(request)
    form = PreferencesForm(request.POST)
    if form.is_valid():
        try:
            services.preferences_set(
                user=request.user,
                instructions=form.cleaned_data["instructions"],
                theme=form.cleaned_data["theme"],
            )
        except ChatError as refused:
            form.add_error("instructions", refused.message)
        else:
            messages.success(request, "Saved. Your next reply follows these settings.")
            return redirect("settings")
    return _page(request, status=400, preferences_form=form)


class PasswordChange(PasswordChangeView):
    """Django's password change on the settings page; the user's other sessions end."""

    template_name = "chat/settings.html"
    success_url = reverse_lazy("settings")

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        answer = super().form_valid(form)
        messages.success(
            self.request, "Password changed. Your other sessions and devices are logged out."
        )
        return answer

    def form_invalid(self, form: PasswordChangeForm) -> HttpResponse:
        return _page(self.request, status=400, password_form=form)


@login_required
def account_export(request: HttpRequest) -> HttpResponse:
    """`/settings/export/`: every thread with its messages, and the preferences, as JSON."""
    answer = HttpResponse(export.account_json(request.user), content_type="application/json")
    name = f"chat-{request.user.get_username()}-{timezone.now():%Y-%m-%d}.json"
    answer["Content-Disposition"] = f'attachment; filename="{name}"'
    return answer


@login_required
@require_POST
def account_delete(request: HttpRequest) -> HttpResponse:
    """`/settings/delete/`: with the username typed as confirmation, stop the user's replies
    in flight, delete the account and everything of it, and log out."""
    user = request.user
    form = DeleteForm(request.POST, username=user.get_username())
    if not form.is_valid():
        return _page(request, status=400, delete_form=form)
    _stop_replies(user.pk)
    logout(request)
    services.account_delete(user=user)
    return redirect(f"{settings.LOGIN_URL}?deleted=1")


def _stop_replies(user_id: int) -> None:
    """Stop the user's replies still being written, whichever process writes them, so none
    writes after the account is gone."""
    streaming = Message.objects.filter(
        thread__owner_id=user_id, status=Message.Status.STREAMING
    ).values_list("thread_id", flat=True)
    for thread_id in set(streaming):
        async_to_sync(generation.reply_stop)(thread_id=str(thread_id))


def page_context(request: HttpRequest) -> dict[str, Any]:
    """Context processor: the page's theme as the user chose it (`system` for anyone else),
    for `<html data-theme>`, and whether sign-up and reset are open (the login page's links)."""
    user = getattr(request, "user", None)
    chosen = Preferences.Theme.SYSTEM
    if user is not None and user.is_authenticated:
        chosen = selectors.preferences_of(user=user).theme
    return {
        "theme": chosen,
        "signup_enabled": settings.SIGNUP_ENABLED,
        "password_reset_enabled": settings.PASSWORD_RESET_ENABLED,
    }


# --- Joining and getting back in: sign-up and password reset, each off unless an operator
# opens it (SIGNUP_ENABLED, PASSWORD_RESET_ENABLED); 404 when off, so nothing says they exist.


def _open_when(setting: str):
    """A view that is a 404 unless `setting` is on."""

    def wrap(view):
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not getattr(settings, setting):
                raise Http404(f"{setting} is off")
            return view(request, *args, **kwargs)

        return wrapped

    return wrap


def _within_rate(request: HttpRequest, kind: str, email: str) -> bool:
    """Count one more sign-up or reset request from the client's address and for the email
    address it names (a fixed one-hour window, in the cache: Redis when configured); False
    when either is over ACCOUNT_REQUESTS_PER_HOUR. Like the login throttle, keyed on the
    address the trusted proxies give (chat/proxy.py)."""
    limit = settings.ACCOUNT_REQUESTS_PER_HOUR
    hour = int(time.time() // 3600)
    allowed = True
    for who in (f"ip:{proxy.client_address(request)}", f"email:{email.strip().lower()}"):
        key = f"chat:accounts:{kind}:{who}:{hour}"
        cache.add(key, 0, timeout=2 * 3600)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.set(key, count := 1, timeout=2 * 3600)
        allowed = allowed and count <= limit
    return allowed


def _too_many(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "registration/card_message.html",
        {
            "title": "Too many requests",
            "text": "Too many requests from here or for this address; try again in an hour.",
        },
        status=429,
    )


class SignUpForm(UserCreationForm):
    """A username, an email address (where the confirmation link goes) and a password."""

    email = forms.EmailField(label="Email address", max_length=254)

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(
                "An account uses this address already; log in or reset its password."
            )
        return email


@_open_when("SIGNUP_ENABLED")
def signup(request: HttpRequest) -> HttpResponse:
    """`/accounts/signup/`: make an inactive account and mail its confirmation link."""
    form = SignUpForm(request.POST or None)
    if request.method == "POST":
        if not _within_rate(request, "signup", request.POST.get("email", "")):
            return _too_many(request)
        if form.is_valid():
            user = form.save(commit=False)
            user.is_active = False  # until the emailed link is followed
            user.save()
            _send_confirmation(request, user)
            return render(
                request,
                "registration/card_message.html",
                {
                    "title": "Check your email",
                    "text": f"We sent a link to {user.email}. Follow it to finish making "
                    "your account, then log in.",
                },
            )
    return render(
        request,
        "registration/card_form.html",
        {"form": form, "title": "Create an account", "submit": "Sign up", "action": "signup"},
        status=400 if form.is_bound else 200,
    )


def _send_confirmation(request: HttpRequest, user: Any) -> None:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    link = request.build_absolute_uri(reverse("signup-confirm", args=[uid, token]))
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    send_mail(
        "Confirm your Chat account",
        f"Hello {user.get_username()},\n\nFollow this link within {hours} hours to confirm your "
        f"email address and finish making your account:\n\n{link}\n\nIf you did not sign up, "
        "ignore this message.\n",
        None,
        [user.email],
    )


@_open_when("SIGNUP_ENABLED")
def signup_confirm(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """`/accounts/signup/<uid>/<token>/`: the emailed link; the account becomes active and
    the admins are told. A used or expired link says so."""
    try:
        user = User.objects.get(pk=urlsafe_base64_decode(uidb64).decode())
    except (ValueError, TypeError, OverflowError, User.DoesNotExist):
        user = None
    if user is None or not default_token_generator.check_token(user, token):
        return render(
            request,
            "registration/card_message.html",
            {"title": "This link does not work", "text": "It was used already or expired."},
            status=400,
        )
    if not user.is_active:
        user.is_active = True
        user.save(update_fields=["is_active"])
        mail_admins(
            f"New account: {user.get_username()}",
            f"{user.get_username()} <{user.email}> signed up and confirmed their address.",
        )
    return redirect(f"{settings.LOGIN_URL}?activated=1")


# --- Invites: an operator's single-use link (the admin, `manage.py invite`) lets one person
# make an account, whether or not sign-up is open. The account is active at once: the operator
# vouched for it, so no confirmation mail.


class InviteForm(SignUpForm):
    """A username and a password; an email address (for password reset) if they like."""

    email = forms.EmailField(label="Email address (optional)", max_length=254, required=False)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip()
        return super().clean_email() if email else ""


INVITE_UNUSABLE = {
    "unknown": (404, "This invite link does not work", "Check that the whole link was copied."),
    "used": (
        410,
        "This invite was used already",
        "Each invite makes one account. Log in, or ask whoever invited you for a new link.",
    ),
    "expired": (410, "This invite has expired", "Ask whoever invited you for a new link."),
}


def _invite_unusable(request: HttpRequest, unusable: services.InviteUnusable) -> HttpResponse:
    status, title, text = INVITE_UNUSABLE[unusable.reason]
    if unusable.reason == "expired":
        text = f"It expired on {unusable.invite.expires_at:%Y-%m-%d %H:%M} UTC. {text}"
    context = {"title": title, "text": text}
    return render(request, "registration/card_message.html", context, status=status)


def invite(request: HttpRequest, token: str) -> HttpResponse:
    """`/accounts/invite/<token>/`: an invite's sign-up form; the account it makes is active
    at once and the invite used up (the admins told). Unknown, used or expired: a page that
    says which."""
    try:
        services.invite_check(token=token)
    except services.InviteUnusable as unusable:
        return _invite_unusable(request, unusable)
    form = InviteForm(request.POST or None)
    if request.method == "POST":
        if not _within_rate(request, "invite", request.POST.get("email", "")):
            return _too_many(request)
        if form.is_valid():
            try:
                user = services.invite_accept(token=token, make_user=form.save)
            except services.InviteUnusable as unusable:  # used meanwhile, in another tab
                return _invite_unusable(request, unusable)
            mail_admins(
                f"New account: {user.get_username()}",
                f"{user.get_username()} made an account with an invite.",
            )
            return redirect(f"{settings.LOGIN_URL}?joined=1")
    context = {"form": form, "title": "You are invited: make your account", "submit": "Sign up"}
    return render(
        request, "registration/card_form.html", context, status=400 if form.is_bound else 200
    )


class PasswordReset(PasswordResetView):
    """Django's reset request, throttled per address and per email address."""

    template_name = "registration/card_form.html"
    extra_context = {"title": "Reset your password", "submit": "Email me a link"}
    success_url = reverse_lazy("password_reset_done")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not _within_rate(request, "reset", request.POST.get("email", "")):
            return _too_many(request)
        return super().post(request, *args, **kwargs)


class PasswordResetDone(PasswordResetDoneView):
    """Django's "mail sent" page, in the product's look."""

    template_name = "registration/card_message.html"
    extra_context = {
        "title": "Check your email",
        "text": "If an account uses that address, a link to set a new password is on its way.",
    }


class PasswordResetConfirm(PasswordResetConfirmView):
    """Django's new-password form behind the emailed link; setting it ends every session
    and socket of the user (standing.py hears the user saved)."""

    template_name = "registration/card_form.html"
    extra_context = {"title": "Set a new password", "submit": "Set password"}
    success_url = reverse_lazy("password_reset_complete")


class PasswordResetComplete(PasswordResetCompleteView):
    """Django's "done" page, in the product's look."""

    template_name = "registration/card_message.html"
    extra_context = {"title": "Password set", "text": "Log in with your new password."}


def reset_urls() -> list:
    """The reset pages under Django's own names, each a 404 while PASSWORD_RESET_ENABLED is
    off (urls.py puts them before django.contrib.auth.urls, whose same paths they hide)."""
    reset = _open_when("PASSWORD_RESET_ENABLED")
    return [
        path("password_reset/", reset(PasswordReset.as_view()), name="password_reset"),
        path(
            "password_reset/done/", reset(PasswordResetDone.as_view()), name="password_reset_done"
        ),
        path(
            "reset/<uidb64>/<token>/",
            reset(PasswordResetConfirm.as_view()),
            name="password_reset_confirm",
        ),
        path("reset/done/", reset(PasswordResetComplete.as_view()), name="password_reset_complete"),
        path("signup/", signup, name="signup"),
        path("signup/<uidb64>/<token>/", signup_confirm, name="signup-confirm"),
        path("invite/<str:token>/", invite, name="invite"),
    ]
