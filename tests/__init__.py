"""Tests of par-server. Requirement ids in docstrings (``PAR-33``, ``NOTE-02``, ...) are listed in
docs/requirements.md."""
