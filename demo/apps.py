from django.apps import AppConfig


class DemoConfig(AppConfig):
    """`manage.py demo`: composes the apps into one process on embedded defaults (a floor above them)."""

    name = "demo"
