"""Wiring: the telephony adapters joined to the domain's writers, and what every siaga112 process
does at start. Built by the entry points (`siaga112.service`, `siaga112.worker`); nothing in the
domain imports it."""
