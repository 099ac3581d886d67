from django.apps import AppConfig


class ResultsConfig(AppConfig):
    name = "hub.results"
    label = "results"
