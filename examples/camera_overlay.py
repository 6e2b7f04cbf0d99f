"""Live captions from a camera, drawn over the picture, in your own loop (no threads).

    python examples/camera_overlay.py                    # first camera, else the synthetic camera
    python examples/camera_overlay.py /dev/video2        # any source velm-edge knows: file, rtsp://, picamera2:, synth:
    python examples/camera_overlay.py synth: --save out.mp4 --frames 90   # headless: write a video instead

A window needs an OpenCV build with a GUI (`pip install opencv-python`; the headless wheel has none);
press q to quit.  For a production pipeline with a latest-frame reader, reconnects and many sinks, use
`velm-edge run SOURCE --sink window` instead; this file shows the few calls underneath.
"""

import argparse
import sys

import cv2

from velm_edge import Captioner, CaptionEvent, VelmError
from velm_edge.live.sources import default_camera, open_source
from velm_edge.runtime.bundle import resolve
from velm_edge.sinks.overlay import draw_caption, require_gui
from velm_edge.sinks.video import VideoSink


def main() -> int:
    ap = argparse.ArgumentParser(description="Captions over live video.")
    ap.add_argument("source", nargs="?", help="camera index, /dev/videoN, file, URL, picamera2: or synth: "
                                              "(default: the first camera, else synth:)")
    ap.add_argument("--save", help="write the captioned video to this .mp4/.avi instead of opening a window")
    ap.add_argument("--frames", type=int, help="stop after this many frames")
    args = ap.parse_args()

    name = args.source or default_camera() or "synth:"
    try:
        video = VideoSink(args.save).start() if args.save else None
        if video is None:
            require_gui("a window")
    except VelmError as e:
        print(f"{e}; or pass --save out.mp4", file=sys.stderr)
        return 2
    shown = 0
    # the shipped photo bundle for cameras and files; the shapes bundle for the synthetic camera
    with Captioner.open(resolve(None, name)) as captioner, open_source(name) as source:
        while args.frames is None or shown < args.frames:
            frame = source.read()                   # a Frame (image, index, capture time), None at the end
            if frame is None:
                break
            caption = captioner.caption(frame.image)
            shown += 1
            if video is not None:                   # the video sink burns the caption in
                video.write(CaptionEvent.of(caption))
                video.frame(frame.image)
                print(f"frame {frame.index}: {caption.text}")
                continue
            cv2.imshow("velm-edge", draw_caption(frame.image, caption.text, f"{caption.timings_ms['total']:.1f} ms"))
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                break
    if video is not None:
        video.stop()
        print(f"wrote {shown} frames to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
