"""Prank and nuisance numbers: flagged by operators with a reason and an expiry; their calls
still reach an operator, through the low-priority queue, after a short announcement."""
