"""Mask generators."""
