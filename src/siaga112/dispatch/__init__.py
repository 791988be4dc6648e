"""Dispatch: incidents handed to agencies, their status, and delivery to agency systems."""
