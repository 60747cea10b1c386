"""The management use cases (services, their access tokens, clients), below the HTTP management API
(``app.api.management``) and the CLI (``app.cli``): typed inputs and answers, no HTTP."""
