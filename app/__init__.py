"""par-server: an OAuth 2.0 Pushed Authorization Request (RFC 9126) server.

Requirement ids in comments and docstrings (``PAR-07``, ``DPOP-05``, ``NOTE-02``, ...) are listed in
docs/requirements.md.
"""
