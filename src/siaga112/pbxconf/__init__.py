"""Asterisk's configuration for a 112 centre, rendered from siaga112's settings."""
