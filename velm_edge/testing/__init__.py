"""Test-only helpers, never used by the product: fault injection for soak runs and recovery tests (faults),
waiting for a condition with a deadline (waiting), and a benchmark or script loaded as a module (scripts).

May import the live room and ``velm_edge.errors``.  Nothing in runtime, live, sinks or tools imports it.
"""
