"""Model providers: stored provider API keys (encrypted at rest) and the catalogue of usable
models (``GET /api/v1/models``)."""
