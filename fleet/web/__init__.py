"""Shared furniture of the operator web UI: base views, form error mapping, the template context.

Imports no app (fleet/ is the ground floor): the role check lives in accounts.views, the pages in
each app's views.
"""
