"""The reference edge agent: identity, MQTT link, down/ handlers and the run loop (no Django)."""

AGENT_VERSION = "1.4.0"
