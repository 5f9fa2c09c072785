"""Backends behind small Protocols; heavy imports live inside each backend."""
