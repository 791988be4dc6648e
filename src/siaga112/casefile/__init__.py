"""The case file: an incident or a call with everything recorded about it, composed from the
capabilities below (calls, recordings, caller locations, caller history, the timeline), and the
open incidents likely about the same event. The HTTP side of incidents lives here because an
incident's view draws on all of them; its rules and writes are `siaga112.incidents`'.
"""
