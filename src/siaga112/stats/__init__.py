"""Service levels of the centre: offered, answered, abandoned, answer times (NENA / EU 112)."""
