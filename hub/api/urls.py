from django.urls import path

from hub.api import web
from hub.api.v1 import api

urlpatterns = [
    path("api/v1/", api.urls),
    path("tokens/", web.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", web.revoke, name="token-revoke"),
    path("tokens/other-hubs/", web.credential_set, name="credential-set"),
    path("tokens/other-hubs/<int:pk>/delete/", web.credential_delete, name="credential-delete"),
]
