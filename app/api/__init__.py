"""HTTP: routers, dependencies and the one error-to-response mapping."""
