from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    """Cursor pages on the primary key: stable while rows are inserted, O(page) at any depth."""

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 500
