"""Dramatiq actors. Each calls domain services; none imports server/, schema/ or resolvers/.

Call `jobs.broker.configure()` before importing actor modules (`jobs.registry.load_actors()`): an actor binds to
the broker that is current when it is declared.
"""
