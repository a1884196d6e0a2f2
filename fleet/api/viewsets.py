"""CRUD viewsets whose writes go through services, so every change is validated and audited."""

from collections.abc import Callable

from rest_framework import viewsets

from fleet.audit import Actor

# Primary keys in URLs: at most 18 digits, so an out-of-range id is a 404 from the router, not a driver overflow.
PK_REGEX = "[0-9]{1,18}"


class ServiceModelViewSet(viewsets.ModelViewSet):
    """ModelViewSet whose create/update/delete call the app's service functions.

    Subclasses set `services = (create, update, delete)`: keyword-only callables taking
    actor= and data= (create), instance=, actor=, data= (update), instance=, actor= (delete).
    """

    services: tuple[Callable, Callable, Callable]
    lookup_value_regex = PK_REGEX
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def actor(self) -> Actor:
        return Actor.from_request(self.request)

    def _as_read(self, instance):
        """The written row as a read returns it (annotations such as device_count, prefetches)."""
        return self.get_queryset().get(pk=instance.pk)

    def perform_create(self, serializer):
        create = self.services[0]
        serializer.instance = self._as_read(create(actor=self.actor(), data=dict(serializer.validated_data)))

    def perform_update(self, serializer):
        update = self.services[1]
        serializer.instance = self._as_read(
            update(instance=serializer.instance, actor=self.actor(), data=dict(serializer.validated_data))
        )

    def perform_destroy(self, instance):
        delete = self.services[2]
        delete(instance=instance, actor=self.actor())
