"""Ingest benchmark: simulated publishers -> Mosquitto -> consumers -> PostgreSQL (see bench/README.md)."""
