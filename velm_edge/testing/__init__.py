"""Test-only helpers, never used by the product: fault injection for soak runs and recovery tests.

May import the live room and ``velm_edge.errors``.  Nothing in runtime, live, sinks or tools imports it.
"""
