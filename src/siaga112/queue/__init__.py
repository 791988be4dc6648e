"""The live queue: callers waiting now and operators by state."""
