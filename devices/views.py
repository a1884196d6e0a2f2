"""Registry pages: the cameras list (filters, columns, bulk actions, saved filters), sites, groups,
saved filters and enrollment tokens. Reads through devices.selectors, writes through the services."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.db.models import Count
from django.http import QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View
from django_tables2 import SingleTableView
from django_tables2.paginators import LazyPaginator

from accounts import services as account_services
from accounts.models import Role
from accounts.views import RoleRequired
from devices import selectors, services
from devices.enrollment import enrollment_token_create, enrollment_token_revoke
from devices.filters import DeviceFilterSet, DeviceGroupFilterSet, SiteFilterSet, criteria_querydict
from devices.forms import (
    BULK_ACTIONS,
    BulkForm,
    ColumnsForm,
    EnrollmentTokenForm,
    GroupForm,
    SavedFilterForm,
    SaveFilterForm,
    SiteForm,
)
from devices.identity_selectors import enrollment_token_list
from devices.models import DeviceGroup, SavedFilter, Site
from devices.revocation import devices_revoke
from devices.tables import DeviceTable, EnrollmentTokenTable, GroupTable, SavedFilterTable, SiteTable
from fleet.errors import FleetError
from fleet.web.forms import apply_error, compact_filters
from fleet.web.views import FilteredTableView, ServiceFormView, refused, ui_actor

COLUMNS_KEY = "columns.cameras"
BULK_LIMIT = 10_000  # as the API's bulk endpoints
SHOWN_FILTERS = ("q", "site", "group", "tag", "hardware_model", "state", "connectivity", "model_version")


def _filter_params(query: QueryDict) -> dict[str, list[str]]:
    """The DeviceFilterSet parameters of a query string (what a saved filter keeps)."""
    known = set(DeviceFilterSet.base_filters)
    return {k: [v for v in query.getlist(k) if v] for k in query if k in known and any(query.getlist(k))}


class CameraList(RoleRequired, FilteredTableView):
    filterset_class = DeviceFilterSet
    table_class = DeviceTable
    template_name = "devices/cameras.html"
    paginator_class = LazyPaginator  # no COUNT(*) over the fleet per page view
    title = "Cameras"
    section = "cameras"

    def get_queryset(self):
        return selectors.device_rows()

    def get_filterset_kwargs(self, filterset_class):
        kwargs = super().get_filterset_kwargs(filterset_class)
        saved = self.request.GET.get("saved")
        if saved and saved.isdigit():
            found = SavedFilter.objects.filter(pk=saved).first()
            if found is not None:  # a dynamic group: its criteria, re-evaluated now
                data = criteria_querydict(found.criteria)
                for key in self.request.GET:
                    if key not in ("saved", "page", "sort"):
                        data.setlist(key, self.request.GET.getlist(key))
                kwargs["data"] = data
                self.saved_filter = found
        return kwargs

    def get_filterset(self, filterset_class):
        filterset = super().get_filterset(filterset_class)
        compact_filters(filterset.form, ("site", "group", "tag", "hardware_model", "state", "connectivity"))
        return filterset

    def bulk_form(self, filter_form) -> BulkForm:
        """The bulk bar's pickers reuse the filter's site and group options (no second query)."""
        form = BulkForm()
        for name in ("site", "group"):
            field = form.fields[name]
            field.widget.choices = [("", field.empty_label), *filter_form.fields[name].widget.choices]
        return form

    def hidden_columns(self) -> list[str]:
        shown = (self.request.user.preferences or {}).get(COLUMNS_KEY)
        if shown is None:
            return list(DeviceTable.DEFAULT_HIDDEN)
        return [c for c in DeviceTable.OPTIONAL if c not in shown]

    def get_table_kwargs(self):
        return {"exclude": self.hidden_columns()}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        hidden = self.hidden_columns()
        choices = [
            (c, str(DeviceTable.base_columns[c].verbose_name or c.replace("_", " ").title()))
            for c in DeviceTable.OPTIONAL
        ]
        filterset = context["filter"]
        criteria = _filter_params(filterset.data) if filterset.data else {}
        context.update(
            shown_filters=SHOWN_FILTERS,
            columns_form=ColumnsForm(
                choices=choices, initial={"columns": [c for c in DeviceTable.OPTIONAL if c not in hidden]}
            ),
            bulk_form=self.bulk_form(filterset.form),
            save_form=SaveFilterForm(initial={"criteria_query": urlencode(criteria, doseq=True)}),
            saved_filters=selectors.saved_filter_list(),
            saved_filter=getattr(self, "saved_filter", None),
            filter_query=urlencode(criteria, doseq=True),
            has_filter=bool(criteria),
        )
        return context


class CameraColumns(RoleRequired, View):
    """Remember which optional columns this person shows."""

    write_role = Role.VIEWER

    def post(self, request):
        choices = [(c, c) for c in DeviceTable.OPTIONAL]
        form = ColumnsForm(request.POST, choices=choices)
        if form.is_valid():
            account_services.user_preference_set(
                actor=ui_actor(request),
                user=request.user,
                key=COLUMNS_KEY,
                value=form.cleaned_data["columns"],
            )
        return redirect(
            reverse("devices:list") + ("?" + request.POST["back"] if request.POST.get("back") else "")
        )


class CameraBulk(RoleRequired, View):
    """Bulk actions on ticked cameras or on every camera a filter matches; a confirmation names the count."""

    def post(self, request):
        form = BulkForm(request.POST)
        back = reverse("devices:list") + (
            "?" + request.POST.get("filter_query", "") if request.POST.get("filter_query") else ""
        )
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, error)
            return redirect(back)
        data = form.cleaned_data
        if data["all"]:
            filters = _filter_params(QueryDict(data["filter_query"]))
            try:
                device_ids = selectors.device_ids_matching(filters=filters, limit=BULK_LIMIT + 1)
            except FleetError as exc:
                return refused(request, exc, back)
        else:
            device_ids = data["device"]
        if len(device_ids) > BULK_LIMIT:
            messages.error(request, f"A bulk action takes at most {BULK_LIMIT:,} cameras; narrow the filter.")
            return redirect(back)
        if not device_ids:
            messages.error(request, "No camera matches.")
            return redirect(back)
        if not request.POST.get("confirmed"):
            return self.confirm(request, data, device_ids, back)
        actor, action = ui_actor(request), data["action"]
        try:
            if action in ("tag", "untag"):
                add, remove = (data["tags"], []) if action == "tag" else ([], data["tags"])
                n = services.devices_bulk_tag(actor=actor, device_ids=device_ids, add=add, remove=remove)
            elif action in ("group", "ungroup"):
                add, remove = ([data["group"]], []) if action == "group" else ([], [data["group"]])
                n = services.devices_bulk_group(actor=actor, device_ids=device_ids, add=add, remove=remove)
            elif action == "move":
                n = services.devices_bulk_move(actor=actor, device_ids=device_ids, site=data["site"])
            else:
                n = devices_revoke(actor=actor, device_ids=device_ids, reason="revoked by operator")
        except FleetError as exc:
            return refused(request, exc, back)
        verb = dict(BULK_ACTIONS)[action].lower()
        messages.success(request, f"Done: {verb} for {n} camera{'s' if n != 1 else ''}.")
        return redirect(back)

    def confirm(self, request, data, device_ids, back):
        action = data["action"]
        count = len(device_ids)
        noun = f"{count} camera{'s' if count != 1 else ''}"
        questions = {
            "tag": f"Add tags {', '.join(data['tags'])} to {noun}?",
            "untag": f"Remove tags {', '.join(data['tags'])} from {noun}?",
            "move": f"Move {noun} to {data['site'] or 'no site'}?",
            "group": f"Add {noun} to group {data['group']}?",
            "ungroup": f"Remove {noun} from group {data['group']}?",
            "revoke": f"Revoke {noun}? Their certificates stop working at once; each must enroll again to come back.",
        }
        hidden = [
            (k, v)
            for k in request.POST
            for v in request.POST.getlist(k)
            if k not in ("csrfmiddlewaretoken", "confirmed")
        ]
        names = list(
            selectors.device_rows().filter(device_id__in=device_ids[:20]).values_list("name", "device_id")
        )
        return render(
            request,
            "confirm.html",
            {
                "title": "Confirm bulk action",
                "question": questions[action],
                "items": [f"{name} ({device_id})" for name, device_id in names],
                "more": max(0, count - len(names)),
                "hidden": hidden,
                "action": reverse("devices:bulk"),
                "submit": f"{dict(BULK_ACTIONS)[action]}: {noun}",
                "danger": action == "revoke",
                "back": back,
                "section": "cameras",
            },
        )


class SaveFilter(RoleRequired, View):
    """The cameras list's current filter, saved as a named, dynamic group."""

    def post(self, request):
        form = SaveFilterForm(request.POST)
        query = request.POST.get("criteria_query", "")
        back = reverse("devices:list") + (f"?{query}" if query else "")
        if not form.is_valid():
            messages.error(request, "Give the filter a name.")
            return redirect(back)
        criteria = _filter_params(QueryDict(query))
        if not criteria:
            messages.error(request, "Set a filter first: an empty filter would match every camera.")
            return redirect(back)
        try:
            saved = services.saved_filter_create(
                actor=ui_actor(request), data={"name": form.cleaned_data["name"], "criteria": criteria}
            )
        except FleetError as exc:
            return refused(request, exc, back)
        messages.success(request, f"Saved filter “{saved}” created; deployments can target it.")
        return redirect(reverse("devices:list") + f"?saved={saved.pk}")


# -- sites, groups, saved filters ---------------------------------------------------------------


class SiteList(RoleRequired, FilteredTableView):
    filterset_class = SiteFilterSet
    table_class = SiteTable
    title = "Sites"
    create_url = "devices:site-create"
    create_label = "Add site"

    def get_queryset(self):
        return selectors.site_list().order_by("name")


class SiteEdit(RoleRequired, ServiceFormView):
    model, form_class, title, list_url = Site, SiteForm, "Site", "devices:sites"
    services = (services.site_create, services.site_update, services.site_delete)


class GroupList(RoleRequired, FilteredTableView):
    filterset_class = DeviceGroupFilterSet
    table_class = GroupTable
    title = "Groups"
    create_url = "devices:group-create"
    create_label = "Add group"

    def get_queryset(self):
        return DeviceGroup.objects.annotate(device_count=Count("devices")).order_by("name")


class GroupEdit(RoleRequired, ServiceFormView):
    model, form_class, title, list_url = DeviceGroup, GroupForm, "Group", "devices:groups"
    services = (services.group_create, services.group_update, services.group_delete)


class SavedFilterList(RoleRequired, SingleTableView):
    table_class = SavedFilterTable
    template_name = "list.html"
    extra_context = {"title": "Saved filters", "section": "settings"}

    def get_queryset(self):
        return selectors.saved_filter_list()


class SavedFilterEdit(RoleRequired, ServiceFormView):
    model, form_class, title, list_url = SavedFilter, SavedFilterForm, "Saved filter", "devices:saved-filters"
    services = (services.saved_filter_create, services.saved_filter_update, services.saved_filter_delete)
    intro = "A saved filter is a dynamic group: it matches whichever cameras fit its criteria now."


# -- enrollment tokens ---------------------------------------------------------------------------


def enroll_line(key: str, token) -> str:
    """The command a technician runs on a new camera (`python -m edge enroll`)."""
    hardware = token.hardware_model.name if token.hardware_model_id else "<hardware model>"
    return (
        f"python -m edge enroll --server {settings.PUBLIC_URL} --token {key} "
        f"--hardware-model {hardware} --state-dir /var/lib/fleet-agent"
    )


class EnrollmentTokens(RoleRequired, View):
    """Admins create tokens (the secret shown once, with the enroll line) and revoke them."""

    read_role = write_role = Role.ADMIN

    def _page(self, request, form, issued=None, line=""):
        table = EnrollmentTokenTable(enrollment_token_list(), request=request)
        table.paginate(page=request.GET.get("page", 1), per_page=50)
        return render(
            request,
            "devices/enrollment_tokens.html",
            {"table": table, "form": form, "issued": issued, "line": line, "section": "settings"},
        )

    def get(self, request):
        return self._page(request, EnrollmentTokenForm())

    def post(self, request):
        if "revoke" in request.POST:
            token = get_object_or_404(enrollment_token_list(), pk=request.POST["revoke"])
            try:
                enrollment_token_revoke(actor=ui_actor(request), token=token)
            except FleetError as exc:
                return refused(request, exc, reverse("devices:enrollment-tokens"))
            messages.success(
                request, f"Enrollment token {token} revoked; cameras enrolled with it keep working."
            )
            return redirect("devices:enrollment-tokens")
        form = EnrollmentTokenForm(request.POST)
        if not form.is_valid():
            return self._page(request, form)
        try:
            issued = enrollment_token_create(actor=ui_actor(request), **form.cleaned_data)
        except FleetError as exc:
            apply_error(form, exc)
            return self._page(request, form)
        token = enrollment_token_list().get(pk=issued.token.pk)
        return self._page(request, EnrollmentTokenForm(), issued=issued, line=enroll_line(issued.key, token))
