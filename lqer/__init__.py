"""lqer package."""
