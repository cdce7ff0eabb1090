"""Dagster resources: storage, the detector, DVC snapshots."""
