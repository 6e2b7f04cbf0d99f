"""The sinks room: where caption events go, one sink per module, all on ``base.Sink``.

kinds (every sink's spec, help and options; ``open_sink``) -> text (print), jsonl, subtitles (srt,
vtt), video, window, kiosk (a local web page), speak (espeak-ng), mqtt; overlay draws captions onto
frames for the window and video sinks.

May import: ``velm_edge.errors``, ``velm_edge.specs``, ``velm_edge.httpd`` (the kiosk's server), the
event type (``velm_edge.live.events``), frame conversion (``velm_edge.runtime.preprocess``) and this
room.  Nothing else of live or runtime.
"""
