"""Agencies that receive incidents: damkar, bpbd, dinkes, polri ..."""
