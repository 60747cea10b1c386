"""Runnable examples of applications in front of par-server."""
