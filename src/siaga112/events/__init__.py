"""The live event stream: the incident timeline as it is written, to operators' consoles,
supervisors and integrators (Server-Sent Events, resumable with Last-Event-ID)."""
