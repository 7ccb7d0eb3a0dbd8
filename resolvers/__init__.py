"""Thin resolvers: check the caller, call one domain service, hand back domain objects and coded errors."""
