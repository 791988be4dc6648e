"""Call recordings: Asterisk records every answered emergency call (MixMonitor, started by the
queue when an operator answers); siaga112 links each file to its call by name, lets allowed
roles download it (audited) and deletes it after the retention period unless it is on hold."""
