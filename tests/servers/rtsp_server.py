"""A real RTSP server on loopback for the tests: GStreamer's gst-rtsp-server streaming a video file as MJPEG.

    /usr/bin/python3 tests/servers/rtsp_server.py PORT FILE      (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0)

Serves rtsp://127.0.0.1:PORT/live, looping FILE; prints "ready" when it listens.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main(port: str, path: str) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # re-encoded as baseline 4:2:0 JPEG: RTP/JPEG (RFC 2435) cannot carry every JPEG OpenCV writes
    factory.set_launch(f'( multifilesrc location="{path}" loop=true ! avidemux ! jpegdec ! videoconvert ! '
                       f'video/x-raw,format=I420 ! jpegenc quality=90 ! rtpjpegpay name=pay0 pt=26 )')
    factory.set_shared(True)
    server.get_mount_points().add_factory("/live", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
