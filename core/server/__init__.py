"""The daemon's HTTP server: usage in over OTLP/HTTP and JSON Lines, a health check, and the routes other
modules add (see app.ROUTE_MODULES)."""
