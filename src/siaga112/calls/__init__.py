"""Calls: one row per caller leg that reached the centre."""
