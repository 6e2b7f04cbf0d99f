"""The ``mqtt://HOST[:PORT]/TOPIC`` sink: every caption published as JSON (QoS 0), for fleets of kiosks.

Uses paho-mqtt (``pip install 'velm-edge[mqtt]'``).  The client runs its own network thread and
reconnects by itself (every 1 to 5 s); publishing never blocks the pipeline.  While the broker is away
only the newest caption is kept, and published on reconnection: stale captions are dropped, not
delivered late, whatever the qos.  ``?client_id=...`` and ``?qos=1`` are optional.

``?discovery=homeassistant`` (the discovery prefix) makes the caption a Home Assistant sensor with no
YAML: a retained discovery config on ``PREFIX/sensor/NODE/caption/config`` (unique_id, device,
state_topic, value_template, availability), ``online`` on ``TOPIC/availability`` (retained; both again
after every reconnection), and an MQTT
last will that makes the broker publish ``offline`` there when the process dies.  A clean stop publishes
``offline`` itself.  ``?name=Lobby camera`` names the device; NODE is the client id or, without one,
the host name and topic.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from urllib.parse import urlsplit

from velm_edge import __version__
from velm_edge.errors import OptionError, SinkError
from velm_edge.live.events import CaptionEvent
from velm_edge.sinks.base import Sink


class MqttSink(Sink):
    def __init__(self, url: str, qos: int = 0, client_id: str = "", discovery: str | None = None,
                 name: str | None = None):
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
        if discovery is not None and not re.fullmatch(r"[A-Za-z0-9_\-/]+", discovery):
            raise OptionError(f"{url}: discovery must be a topic prefix such as homeassistant, got {discovery!r}")
        self.host, self.port = parts.hostname, port or 1883
        self.topic, self.qos, self.name = parts.path.strip("/"), qos, url
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_queued_messages_set(100)
        self.client.reconnect_delay_set(1, 5)  # paho's default backs off to 120 s: captions lost for minutes
        self.client.on_connect = self._on_connect
        self.published = 0
        self._newest: str | None = None  # the newest caption made while the broker was away
        self._lock = threading.Lock()
        self.discovery = None
        if discovery is not None:
            node = re.sub(r"[^A-Za-z0-9_]", "_", client_id or f"{socket.gethostname()}_{self.topic}")
            self.availability = f"{self.topic}/availability"
            self.discovery = (f"{discovery.strip('/')}/sensor/{node}/caption/config",
                              discovery_config(node, self.topic, self.availability, name))
            self.client.will_set(self.availability, "offline", qos=1, retain=True)

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        """On every (re)connection: the discovery config and "online" (retained), then the newest caption."""
        if getattr(reason, "is_failure", False):
            return
        if self.discovery is not None:
            topic, config = self.discovery
            client.publish(topic, json.dumps(config), qos=1, retain=True)
            client.publish(self.availability, "online", qos=1, retain=True)
        with self._lock:
            newest, self._newest = self._newest, None
        if newest is not None:
            self._publish(newest)

    def _publish(self, payload: str) -> None:
        info = self.client.publish(self.topic, payload, qos=self.qos)
        self.published += info.rc == 0

    def start(self) -> MqttSink:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def write(self, event: CaptionEvent) -> None:
        payload = json.dumps(event.to_json(), separators=(",", ":"))
        if not self.client.is_connected():
            with self._lock:
                self._newest = payload  # newest wins: published when the broker is back
            return
        with self._lock:
            self._newest = None  # this one is newer
        self._publish(payload)

    def stop(self) -> None:
        if self.discovery is not None and self.client.is_connected():
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass  # the connection went away: the broker publishes the last will instead
        self.client.loop_stop()
        self.client.disconnect()


def discovery_config(node: str, state_topic: str, availability_topic: str, name: str | None = None) -> dict:
    """Home Assistant's MQTT discovery payload for a sensor whose state is the caption's text."""
    return {
        "name": "Caption", "unique_id": f"{node}_caption", "object_id": f"{node}_caption",
        "state_topic": state_topic, "value_template": "{{ value_json.text[:255] }}",
        "json_attributes_topic": state_topic,
        "json_attributes_template": "{{ {'frame': value_json.frame, 'frame_age_ms': value_json.frame_age_ms, "
                                    "'score': value_json.score, 'confidence': value_json.confidence, "
                                    "'tags': value_json.tags, 'detections': value_json.detections} | tojson }}",
        "availability_topic": availability_topic, "payload_available": "online", "payload_not_available": "offline",
        "icon": "mdi:image-text",
        "device": {"identifiers": [f"velm_edge_{node}"], "name": name or f"velm-edge {node}",
                   "manufacturer": "velm-edge", "model": "velm-edge live captions", "sw_version": __version__},
    }
