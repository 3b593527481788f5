"""hwmodel package."""
