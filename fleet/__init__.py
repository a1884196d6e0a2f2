"""Fleet: operations platform for fleets of edge AI cameras (the Django project)."""

from .celery import app as celery_app

__all__ = ("celery_app",)
