"""JSON API for machine clients (the 12345 hotline, a web form) under /api/v1, with its OpenAPI document.

- routes.py   handlers and `setup(app)`
- schemas.py  pydantic models of every request and response (the OpenAPI schemas are derived from them)
- body.py     reading request bodies: content type, size limits, JSON and multipart
- errors.py   the one error shape {"error": {"code", "message", ...}} and JSON encoding
- openapi.py  the OpenAPI 3.1 document
"""
