"""The web dashboard (services.api.dashboard.routes), served by the API service."""
