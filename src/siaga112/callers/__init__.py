"""Caller history: what a number called about before, shown while its call waits."""
