"""The ``mqtt://HOST[:PORT]/TOPIC`` sink: every caption published as JSON (QoS 0), for fleets of kiosks.

Uses paho-mqtt (``pip install 'velm-edge[mqtt]'``).  The client runs its own network thread and
reconnects by itself; publishing never blocks the pipeline (messages made while the broker is away
are dropped, not queued without bound).  ``?client_id=...`` and ``?qos=1`` are optional.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from velm_edge.sinks import Sink


class MqttSink(Sink):
    def __init__(self, url: str):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ValueError("the mqtt sink needs paho-mqtt: pip install 'velm-edge[mqtt]'") from None
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname or not parts.path.strip("/"):
            raise ValueError(f"{url}: expected mqtt://HOST[:PORT]/TOPIC")
        opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.host, self.port = parts.hostname, parts.port or 1883
        self.topic, self.qos, self.name = parts.path.strip("/"), int(opts.get("qos", 0)), url
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=opts.get("client_id", ""))
        self.client.max_queued_messages_set(100)
        self.published = 0

    def start(self) -> MqttSink:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def write(self, event: dict) -> None:
        info = self.client.publish(self.topic, json.dumps(event, separators=(",", ":")), qos=self.qos)
        self.published += info.rc == 0

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
