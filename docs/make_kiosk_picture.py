"""Make docs/kiosk.png: the kiosk page (`velm-edge run synth: --sink kiosk:...`) with the shipped model's live
caption, as headless Chromium renders it.

    python docs/make_kiosk_picture.py [--out docs/kiosk.png] [--chromium chromium]
"""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_caption(port: int, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            latest = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/latest.json", timeout=1).read())
            if latest and latest.get("text"):
                return latest["text"]
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the kiosk on port {port} showed no caption within {seconds:g} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).with_name("kiosk.png")))
    ap.add_argument("--chromium", default="chromium", help="the browser binary (default: %(default)s)")
    args = ap.parse_args()
    if shutil.which(args.chromium) is None:
        raise SystemExit(f"{args.chromium} is not installed (Debian: apt-get install chromium)")
    port = free_port()
    # one scene held for the whole run, so the screenshot shows the caption read from /latest.json
    run = subprocess.Popen([sys.executable, "-m", "velm_edge.tools.cli", "run", "synth:?fps=15&hold_s=60&seed=11",
                            "--sink", f"kiosk:127.0.0.1:{port}", "--duration", "60"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        caption = first_caption(port)
        subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=800,600", "--timeout=3000", f"--screenshot={args.out}",
                        f"http://127.0.0.1:{port}/"], capture_output=True, timeout=60, check=True)
    finally:
        run.terminate()
        run.wait(10)
    print(f"wrote {args.out}: the kiosk page captioning {caption!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
