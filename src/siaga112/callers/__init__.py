"""Callers: what counts as a caller's number (`numbers`), finding a number's calls and incidents
(`matching`), its history shown while its call waits (`service`), and prank and nuisance flags
on numbers (`flags`): flagged by operators with a reason and an expiry, their calls still reach
an operator, through the low-priority queue, after a short announcement."""
