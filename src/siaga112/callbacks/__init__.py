"""Callbacks of abandoned and silent calls: the worklist, claims, attempts and their outcomes."""
