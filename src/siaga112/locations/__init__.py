"""Caller locations with provenance (storage only until the location issue lands)."""
