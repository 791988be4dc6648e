"""The operator console at /console: server-rendered page shells, static ES modules, and the
translations; the pages talk to the /v1 API and its event stream with a session cookie."""
