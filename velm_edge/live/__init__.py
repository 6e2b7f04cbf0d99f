"""The live room: frames from a source become a stream of ``CaptionEvent``s.

sources (camera, file, stream, picamera2, synth:) -> reader (newest frame, reconnects) -> scene_gate
(skip unchanged frames) -> vision_ahead (the frame loop; the next frame's vision graph meanwhile) -> pipeline
(captions, run into sinks) -> events (``CaptionEvent``, ``Stabilizer``).  Beside them: options
(``LiveOptions``), push (``PushCaptioner`` for frames from your own loop), systemd (readiness and
watchdog).

May import: ``velm_edge.errors``, ``velm_edge.specs``, the runtime room, the synth room (the synthetic
camera's pictures) and this room.  Never sinks or tools
(the pipeline names the sink type for type checkers only).
"""
