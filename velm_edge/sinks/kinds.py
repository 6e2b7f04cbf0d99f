"""Every kind of sink, written once: its spec form, its help and its ``?options``; ``open_sink`` builds one.

``velm-edge run --help``, the error for an unknown sink and the docs all print ``SINK_KINDS``.  The
modules of the heavier sinks (kiosk, speak, mqtt, video, window) are imported only when one is asked for.
"""

from __future__ import annotations

from velm_edge.errors import OptionError
from velm_edge.sinks.base import Sink
from velm_edge.specs import Key, Kind, split, usage

SINK_KINDS = (
    Kind("print", "print", "text lines on stdout (the default)"),
    Kind("jsonl", "jsonl:- or jsonl:PATH", "one JSON object per line (stdout, or appended to a file)"),
    Kind("srt", "srt:PATH[?last_s=2]", "SubRip subtitles, a cue per caption change",
         (Key("last_s", float, "seconds the last cue shows"),)),
    Kind("vtt", "vtt:PATH[?last_s=2]", "WebVTT subtitles, a cue per caption change",
         (Key("last_s", float, "seconds the last cue shows"),)),
    Kind("video", "video:PATH[?fps=15]", "the preview with captions burned in (.mp4 or .avi)",
         (Key("fps", float, "frame rate written into the file"),)),
    Kind("window", "window", "an OpenCV preview window (q or Esc quits; needs a GUI build of OpenCV)"),
    Kind("kiosk", "kiosk[:HOST:PORT][?token=T]", "a local web page with preview and captions "
         "(http://127.0.0.1:8080; a non-loopback HOST needs a token)",
         (Key("token", str, "required from every client"), Key("jpeg_quality", int, "preview JPEG quality"),
          Key("max_clients", int, "streams served at once"),
          Key("allow_origin", str, "a web page origin (scheme://host:port) besides the kiosk's own that may read "
                                   "it (CORS); other pages get 403"))),
    Kind("speak", "speak[:VOICE][?hold=3]", "steady captions read aloud by espeak-ng",
         (Key("hold", int, "identical captions in a row before one is spoken"),)),
    Kind("mqtt", "mqtt://HOST[:PORT]/TOPIC[?qos=0&client_id=ID&discovery=homeassistant&name=N]",
         "every caption published as JSON (paho-mqtt); discovery=homeassistant makes it a Home Assistant sensor",
         (Key("qos", int, "MQTT quality of service 0-2"), Key("client_id", str, "the client's id"),
          Key("discovery", str, "Home Assistant's discovery prefix"), Key("name", str, "the device's name"))),
)
KINDS = {k.name: k for k in SINK_KINDS}


def _kiosk(spec: str, rest: str, opts: dict) -> Sink:
    from velm_edge.sinks.kiosk import KioskSink

    host, port = "127.0.0.1", 8080
    if rest:
        host_part, _, port_part = rest.rpartition(":")
        if host_part:
            host = host_part.strip("[]")
        try:
            port = int(port_part)
        except ValueError:
            raise OptionError(f"{spec}: expected kiosk, kiosk:PORT or kiosk:HOST:PORT") from None
    return KioskSink(host, port, **opts)


def open_sink(spec: str) -> Sink:
    """The sink a spec names (see ``SINK_KINDS``); OptionError for an unknown kind, key or value."""
    head, query = split(spec.strip())
    name, colon, rest = head.partition(":")
    if head.startswith("mqtt://"):
        name, rest = "mqtt", head
    kind = KINDS.get(name)
    if kind is None:
        raise OptionError(f"unknown sink {spec!r}; sinks: {usage(SINK_KINDS)}")
    opts = kind.options(spec, query)
    if name in ("print", "window") and rest:
        raise OptionError(f"{spec}: the {name} sink takes nothing after its name")
    if name == "print":
        from velm_edge.sinks.text import PrintSink

        return PrintSink()
    if name == "window":
        from velm_edge.sinks.window import WindowSink

        return WindowSink()
    if name == "kiosk":
        return _kiosk(spec, rest, opts)
    if name == "speak":
        from velm_edge.sinks.speak import SpeakSink

        return SpeakSink(rest or None, **opts)
    if name == "mqtt":
        from velm_edge.sinks.mqtt import MqttSink

        return MqttSink(rest, **opts)
    if not rest:
        raise OptionError(f"{spec}: the {name} sink needs a target: {kind.form}")
    if name == "jsonl":
        from velm_edge.sinks.jsonl import JsonlSink

        return JsonlSink(rest)
    if name == "video":
        from velm_edge.sinks.video import VideoSink

        return VideoSink(rest, **opts)
    from velm_edge.sinks.subtitles import SubtitleSink

    return SubtitleSink(rest, name, **opts)
