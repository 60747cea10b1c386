"""An authorization endpoint in front of par-server (README.md in this directory)."""
