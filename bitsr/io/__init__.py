"""Containers and pixels through PyAV; the parser gets the same packets."""
