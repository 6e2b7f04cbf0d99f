"""The service room: captions for any program over local HTTP (``velm-edge serve``).

images (the type and size of an upload, read from its first bytes before it is decoded), compat (the
Ollama and OpenAI protocols' requests and answers) and protocols (their routes) -> server
(``CaptionService``: the routes, limits, a pool of captioning threads and the live board) -> openapi (the
machine-readable description of exactly those routes).  Every route's errors are a ``refusal.Refusal``.

May import: ``velm_edge.errors``, ``velm_edge.specs``, ``velm_edge.httpd``, the runtime room and the live
room (for a live source's captions).  Nothing from sinks or tools.
"""
