from django.apps import AppConfig


class SuitesConfig(AppConfig):
    name = "hub.suites"
    label = "suites"
