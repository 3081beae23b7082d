"""Pub/sub components."""
