"""Captions inside your own program: you push frames from your loop, captions come to a callback.

    python examples/callback.py                 # frames from the synthetic camera, 5 seconds
    python examples/callback.py --camera 0      # frames from an OpenCV camera

`push()` never blocks your loop: the captioner works on its own thread and always takes the newest
frame, so a slow model drops frames instead of delaying yours.  The callback runs on that thread;
hand results to your UI thread with a queue if your toolkit needs it.
"""

import argparse
import sys
import time

import cv2

from velm_edge import PushCaptioner
from velm_edge.live.sources import SynthSource


def on_caption(event: dict) -> None:
    # Everything a caption event carries: text, tokens, score, complete, frame, captured, frame_age_ms,
    # latency_ms, dropped, bad_frames, reconnects.
    print(f"frame {event.frame:4d}: {event.text!r} ({event.latency_ms:.1f} ms, "
          f"{event.dropped} frames dropped so far)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description="Push frames, get captions through a callback.")
    ap.add_argument("--camera", type=int, help="OpenCV camera index (default: the synthetic camera)")
    ap.add_argument("--seconds", type=float, default=5.0, help="how long to run (default: 5)")
    args = ap.parse_args()

    camera = cv2.VideoCapture(args.camera) if args.camera is not None else None
    synth = SynthSource(fps=30, size=320)       # stands in for your program's own frames
    end = time.monotonic() + args.seconds
    # the photo bundle for a real camera; the synthetic frames are what the shapes bundle knows
    with PushCaptioner(on_caption, bundle="photo" if camera is not None else "shapes") as captioner:
        while time.monotonic() < end:
            if camera is not None:
                ok, frame = camera.read()
                if not ok:
                    print("the camera returned no frame", file=sys.stderr)
                    return 1
            else:
                frame = synth.read().image
            captioner.push(frame)                # your program goes on at once
    return 0


if __name__ == "__main__":
    sys.exit(main())
