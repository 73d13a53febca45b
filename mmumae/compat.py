"""Compatibility fixes for this stack (placeholder, filled by foundation)."""
