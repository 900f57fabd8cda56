"""The user's own account: the settings page (their instructions to the agent, the theme, the
password through Django's own view), the export of everything they have, and deleting it all.

Views decode and hand over: the writes are services.py's (`preferences_set`,
`account_delete`), the export is api/export.py's. A password change goes through Django's
`PasswordChangeView`, so its session is kept (`update_session_auth_hash`) while every other
session of the user, and every socket and stream opened with one, ends on every process
(standing.py hears the user saved).
"""

from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_POST

from chat import selectors, services
from chat.api import export
from chat.engine import generation
from chat.errors import ChatError
from chat.models import Message, Preferences


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


def theme(request: HttpRequest) -> dict[str, str]:
    """Context processor: the page's theme as the user chose it (`system` for anyone else),
    for `<html data-theme>`."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"theme": Preferences.Theme.SYSTEM}
    return {"theme": selectors.preferences_of(user=user).theme}
