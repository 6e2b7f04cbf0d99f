"""The ``mqtt://HOST[:PORT]/TOPIC`` sink: every caption published as JSON (QoS 0), for fleets of kiosks.

Uses paho-mqtt (``pip install 'velm-edge[mqtt]'``).  The client runs its own network thread and
reconnects by itself; publishing never blocks the pipeline (messages made while the broker is away
are dropped, not queued without bound).  ``?client_id=...`` and ``?qos=1`` are optional.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from velm_edge.errors import OptionError, SinkError
from velm_edge.live.events import CaptionEvent
from velm_edge.sinks.base import Sink


class MqttSink(Sink):
    def __init__(self, url: str, qos: int = 0, client_id: str = ""):
        """``url``: mqtt://HOST[:PORT]/TOPIC (its query, if any, is the caller's: see sinks.kinds)."""
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise SinkError("the mqtt sink needs paho-mqtt: pip install 'velm-edge[mqtt]'") from None
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "mqtt" or not parts.hostname or not parts.path.strip("/") or port == -1:
            raise OptionError(f"{url}: expected mqtt://HOST[:PORT]/TOPIC")
        if qos not in (0, 1, 2):
            raise OptionError(f"{url}: qos must be 0, 1 or 2, got {qos}")
        self.host, self.port = parts.hostname, port or 1883
        self.topic, self.qos, self.name = parts.path.strip("/"), qos, url
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_queued_messages_set(100)
        self.published = 0

    def start(self) -> MqttSink:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def write(self, event: CaptionEvent) -> None:
        info = self.client.publish(self.topic, json.dumps(event.to_json(), separators=(",", ":")), qos=self.qos)
        self.published += info.rc == 0

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
