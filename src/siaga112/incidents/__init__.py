"""Incidents: what happened, where, and what the centre did about it."""
