"""Telemetry's settings pages: alert rules, bandwidth policies, dead letters."""

from __future__ import annotations

from accounts.models import Role
from accounts.views import RoleRequired
from fleet.web.views import FilteredTableView, ServiceFormView
from telemetry.events import alerts
from telemetry.events.filters import AlertRuleFilterSet
from telemetry.filters import BandwidthPolicyFilterSet, DeadLetterFilterSet
from telemetry.forms import AlertRuleForm, BandwidthPolicyForm
from telemetry.models import BandwidthPolicy, DeadLetter
from telemetry.models.events import AlertRule
from telemetry.policies import services as policies
from telemetry.tables import AlertRuleTable, DeadLetterTable, PolicyTable


class AlertRuleList(RoleRequired, FilteredTableView):
    filterset_class = AlertRuleFilterSet
    table_class = AlertRuleTable
    title = "Alert rules"
    create_url = "telemetry:alert-rule-create"
    create_label = "Add rule"

    def get_queryset(self):
        return AlertRule.objects.all()


class AlertRuleEdit(RoleRequired, ServiceFormView):
    model, form_class, title, list_url = AlertRule, AlertRuleForm, "Alert rule", "telemetry:alert-rules"
    services = (alerts.alert_rule_create, alerts.alert_rule_update, alerts.alert_rule_delete)


class PolicyList(RoleRequired, FilteredTableView):
    filterset_class = BandwidthPolicyFilterSet
    table_class = PolicyTable
    title = "Bandwidth policies"
    create_url = "telemetry:policy-create"
    create_label = "Add policy"

    def get_queryset(self):
        return BandwidthPolicy.objects.select_related("device", "group")


class PolicyEdit(RoleRequired, ServiceFormView):
    model, form_class, title, list_url = (
        BandwidthPolicy,
        BandwidthPolicyForm,
        "Bandwidth policy",
        "telemetry:policies",
    )
    services = (policies.policy_create, policies.policy_update, policies.policy_delete)
    intro = "Precedence: the camera's own policy, then its groups' (highest priority), then the fleet default. Changes reach cameras as their retained configuration."


class DeadLetterList(RoleRequired, FilteredTableView):
    """What devices sent that the ingest refused, and why (operators: payloads may hold what they should not)."""

    read_role = Role.OPERATOR
    filterset_class = DeadLetterFilterSet
    table_class = DeadLetterTable
    title = "Dead letters"

    def get_queryset(self):
        return DeadLetter.objects.all()
