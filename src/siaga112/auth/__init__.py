"""API keys with roles; only their SHA-256 hash is stored."""
