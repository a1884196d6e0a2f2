"""Health metrics: samples from up/telemetry, rollups, daily partitions, retention."""
