"""Telemetry's pages: the dashboard, a camera's page, events review, alerts, policies, dead letters.

Split by concept; each module calls the selectors and services the API calls.
"""
