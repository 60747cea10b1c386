"""par-server: an OAuth 2.0 Pushed Authorization Request (RFC 9126) server."""
