"""The Fleet device protocol, shared by the server and the edge agent.

Pure Python (msgspec + cryptography), never imports Django, so both sides load
the same topic names, message schemas and manifest verifier and cannot drift.
docs/protocol.md is the human-readable source of truth for this package.
"""

PROTOCOL_VERSION = 1
