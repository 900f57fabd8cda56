"""URLs: the chat page, a share's page, the ChatKit page, settings, accounts, admin, the API,
health check."""

from django.contrib import admin
from django.urls import include, path

from chat import accounts, views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("t/<uuid:thread_id>/", views.chat_page, name="thread"),
    path("s/<str:token>/", views.share_page, name="share-page"),
    path("chatkit/", views.chatkit_page, name="chatkit-page"),
    path("settings/", accounts.settings_page, name="settings"),
    path("settings/export/", accounts.account_export, name="account-export"),
    path("settings/delete/", accounts.account_delete, name="account-delete"),
    # Django's own password change, on the settings page (before auth.urls: its name wins).
    path("accounts/password_change/", accounts.PasswordChange.as_view(), name="password_change"),
    path("accounts/", include(accounts.reset_urls())),  # 404 unless an operator opens them
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("chat.api.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
]

# JSON APIs answer JSON: a body past the upload limit is a 413 `too_large` (chat/views.py).
handler400 = "chat.views.bad_request"
