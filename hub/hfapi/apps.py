from django.apps import AppConfig


class HfapiConfig(AppConfig):
    name = "hub.hfapi"
    label = "hfapi"
    verbose_name = "Hub repositories"
