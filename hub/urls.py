from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from hub import monitoring

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("health", monitoring.health, name="health"),
    path("metrics", monitoring.metrics, name="metrics"),
    # browsers ask for /favicon.ico on pages that name no icon (the API docs, raw files)
    path("favicon.ico", RedirectView.as_view(url=static("hub/favicon.svg"), permanent=True)),
    path("", include("hub.api.urls")),
    path("", include("hub.jobs.urls")),
    path("", include("hub.catalog.urls")),
    path("", include("hub.suites.urls")),
    # last: its /{namespace}/{name} routes must not shadow the routes above
    path("", include("hub.hfapi.urls")),
]

handler400 = "hub.errors.bad_request"
