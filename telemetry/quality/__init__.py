"""Model quality per device and model version: recording windows, hourly rollups, cohort reads."""
