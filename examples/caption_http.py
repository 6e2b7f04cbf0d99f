"""Caption an image with a running ``velm-edge serve``, from Python's standard library alone.

    velm-edge serve &
    python examples/caption_http.py photo.jpg        # prints the caption

VELM_URL overrides the address; VELM_TOKEN is sent as a bearer token when set.
"""

import json
import os
import sys
import urllib.error
import urllib.request


def caption(path: str, url: str = os.environ.get("VELM_URL", "http://127.0.0.1:8090")) -> dict:
    headers = {"Content-Type": "application/octet-stream"}
    if os.environ.get("VELM_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['VELM_TOKEN']}"
    with open(path, "rb") as f:
        request = urllib.request.Request(f"{url}/v1/caption?beam_size=3", data=f.read(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


if __name__ == "__main__":
    try:
        print(caption(sys.argv[1])["text"])
    except urllib.error.HTTPError as e:
        sys.exit(f"error {e.code}: {json.load(e)['error']}")
