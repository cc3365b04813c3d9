"""Small step modules that the fingerprint tests fingerprint (this folder is their project)."""
