"""The ingest: everything devices publish on fleet/v1/devices/+/up/#, in batches, exactly once in effect.

- `types`: what a handler receives (`Inbound`) and the contract of a kind handler.
- `dispatch`: the one table kind -> handler.
- `services`: one batch -> one transaction (decode, refuse, deduplicate, dispatch, dead-letter).
- `committer`: where batches are committed: a forked process (`manage.py ingest`) or the calling thread.
- `runner`: the MQTT loop (`manage.py ingest`, `run_ingest(stop_event)` for the demo).
"""
