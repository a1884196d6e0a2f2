"""Base views of the web UI: who acts (source "ui"), list pages over a FilterSet and a table."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.paginators import LazyPaginator

from fleet.audit import Actor
from fleet.errors import FleetError
from fleet.models import AuditSource
from fleet.web.forms import apply_error


def ui_actor(request: HttpRequest) -> Actor:
    """The person behind a UI request, so every write it makes is audited with source "ui"."""
    return Actor.from_request(request, source=AuditSource.UI)


def refused(request: HttpRequest, exc: FleetError, back: str) -> HttpResponse:
    """A refused action without a form: say why on the page it came from."""
    messages.error(request, exc.message)
    return HttpResponseRedirect(back)


class FilteredTableView(SingleTableMixin, FilterView):
    """A list page: the app's FilterSet (the one its API uses) feeds a django-tables2 table.

    Invalid filter input shows its errors next to the field and an empty table (strict mode).
    """

    template_name = "list.html"
    paginate_by = 50
    paginator_class = LazyPaginator  # no COUNT(*) per page view: pages cost the same at any size
    title = ""
    empty_text = "Nothing here yet."
    create_url: str | None = None  # shown as the page's primary action to those who may write
    create_label = "Add"

    def get_paginate_by(self, queryset):
        return None  # the table paginates (paginate_by); the list view must not fetch the page again

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(title=self.title, empty_text=self.empty_text)
        context.update(
            create_url=self.create_url and reverse(self.create_url), create_label=self.create_label
        )
        context.setdefault("section", getattr(self, "section", "settings"))
        return context


class ServiceFormView(View):
    """Create or edit one object through the app's services (never the ORM), with a ModelForm for input.

    Subclasses set model, form_class, services = (create, update, delete) (None where not allowed),
    title and list_url (a URL name). Mix the app's role check in front (accounts.views.RoleRequired).
    """

    model: type[models.Model]
    form_class: type[forms.ModelForm]
    services: tuple[Callable | None, Callable | None, Callable | None] = (None, None, None)
    title = ""
    list_url = ""
    template_name = "form.html"
    intro = ""

    def _object(self, pk):
        return get_object_or_404(self.model, pk=pk) if pk is not None else None

    def render(self, request, form, obj=None):
        context = {
            "form": form,
            "object": obj,
            "title": self.title if obj is None else f"{self.title}: {obj}",
            "submit": "Save" if obj is not None else "Create",
            "cancel": reverse(self.list_url),
            "intro": self.intro,
            "can_delete": obj is not None and self.services[2] is not None,
            "section": "settings",
            # The role check runs again on POST; this only spares a viewer a form they cannot send.
            "read_only": not request.user.has_role(getattr(self, "write_role", "operator")),
        }
        return render(request, self.template_name, context)

    def data(self, form) -> dict:
        return dict(form.cleaned_data)

    def get(self, request, pk=None):
        obj = self._object(pk)
        return self.render(request, self.form_class(instance=obj), obj)

    def post(self, request, pk=None):
        obj = self._object(pk)
        create, update, delete = self.services
        if obj is not None and "delete" in request.POST and delete is not None:
            try:
                delete(actor=ui_actor(request), instance=obj)
            except FleetError as exc:
                return refused(request, exc, request.path)
            messages.success(request, f"{self.model._meta.verbose_name.capitalize()} “{obj}” deleted.")
            return redirect(self.list_url)
        # The form validates a throwaway copy: the service must see the row as it was (audit "before").
        scratch = self.model.objects.get(pk=obj.pk) if obj is not None else None
        form = self.form_class(request.POST, request.FILES, instance=scratch)
        if form.is_valid():
            try:
                if obj is None:
                    saved = create(actor=ui_actor(request), data=self.data(form))
                else:
                    saved = update(actor=ui_actor(request), instance=obj, data=self.data(form))
            except FleetError as exc:
                apply_error(form, exc)
            else:
                messages.success(request, f"{self.model._meta.verbose_name.capitalize()} “{saved}” saved.")
                return redirect(self.list_url)
        return self.render(request, form, obj)
