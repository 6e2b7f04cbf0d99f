"""The runtime room: a bundle in, a caption out (``Captioner``).

bundle (read and check the files) -> contract (what a bundle must hold) -> backend (an interpreter
package) -> graph (one TFLite graph by tensor names) -> preprocess (frame -> model image) -> decode
(greedy / beam over the language graph) -> tokenizer (ids -> words) -> captioner (all of it per frame).
Beside them: grounding (the ImageNet classes as tags and a nudge to the decoder), confidence (how sure a
caption is), batching (beams as one batch of the language graph, read with flatbuffer), choices (the fixed
vocabularies), options (``RuntimeOptions``), quant, image_file, isolate.

May import: ``velm_edge.errors`` and this room.  Imports nothing from live, sinks, tools or testing.
"""
