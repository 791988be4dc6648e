"""Acting on live calls through Asterisk: hang up, blind transfer to an agency number."""
