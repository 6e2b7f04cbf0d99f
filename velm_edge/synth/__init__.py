"""The synthetic scenes room: coloured shapes on textured backgrounds with their true captions (``scenes``).

The shapes model is trained on them (``velm_convert.datasets``), the synthetic camera ``synth:`` shows them
(``velm_edge.live.sources``), and benchmarks and tests draw frames from them.

May import: ``velm_edge.errors``.
"""
