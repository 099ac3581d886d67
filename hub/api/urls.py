from django.urls import path

from hub.api import web
from hub.api.v1 import api

urlpatterns = [
    path("api/v1/", api.urls),
    path("tokens/", web.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", web.revoke, name="token-revoke"),
]
