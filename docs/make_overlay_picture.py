"""Make docs/overlay.png: four moments of `velm-edge run synth: --sink video:...` (captions burned into the
video by the project's own video sink), side by side.

    python docs/make_overlay_picture.py [--out docs/overlay.png]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from velm_edge.live.sources import open_source


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).with_name("overlay.png")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp, "captions.avi")
        # 4 scenes of 2 s each at 15 fps, played as fast as they are captioned (frames=... ends the source)
        subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", "run",
                        "synth:?size=320&seed=7&hold_s=2&frames=120",
                        "--sink", f"video:{video}", "--sink", "jsonl:" + str(Path(tmp, "c.jsonl"))], check=True)
        with open_source(str(video)) as captioned:
            frames = [f.image for f in iter(captioned.read, None)]
    picks = [frames[i] for i in (25, 55, 85, 115) if i < len(frames)]  # late in each scene: caption settled
    sheet = np.concatenate([np.pad(f, ((4, 4), (4, 4), (0, 0)), constant_values=255) for f in picks], axis=1)
    cv2.imwrite(args.out, sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
