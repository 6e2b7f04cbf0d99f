#!/usr/bin/env bash
# An offline captioning kiosk: live captions on a local web page, shown full screen.
#
#   examples/kiosk.sh [SOURCE]          # default: the first camera, else the synthetic camera
#
# Starts `velm-edge run SOURCE --sink kiosk:127.0.0.1:PORT` and, when a display and Chromium are there,
# opens the page full screen (--kiosk). Stop with Ctrl-C: the captioner stops with the browser.
# Environment: PORT (8080), BROWSER (chromium; "none" = do not open one), DURATION (seconds; default
# forever), BIN (where velm-edge is; default ../.venv/bin, else PATH), EXTRA (more velm-edge run flags,
# e.g. "--gate 4 --stable 2"). Showing the page on other machines needs a token: see README "Kiosk".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../.venv/bin}
VELM=$BIN/velm-edge; [ -x "$VELM" ] || VELM=velm-edge
PORT=${PORT:-8080}
SOURCE=${1:-}
if [ -z "$SOURCE" ]; then
    ls /dev/video* >/dev/null 2>&1 && SOURCE=0 || { echo "no camera: using the synthetic camera"; SOURCE=synth:; }
fi
ARGS=(run "$SOURCE" --sink "kiosk:127.0.0.1:$PORT" ${EXTRA:-})
[ -n "${DURATION:-}" ] && ARGS+=(--duration "$DURATION")

"$VELM" "${ARGS[@]}" &
CAPTIONER=$!
BROWSER_PID=
trap 'kill $CAPTIONER $BROWSER_PID 2>/dev/null || true' EXIT

URL="http://127.0.0.1:$PORT/"
for _ in $(seq 100); do  # wait for the page (10 s at most)
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 $CAPTIONER 2>/dev/null || { echo "velm-edge run stopped before serving $URL" >&2; exit 1; }
    sleep 0.1
done
echo "kiosk page: $URL"

BROWSER=${BROWSER:-chromium}
if [ "$BROWSER" != none ] && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v "$BROWSER" >/dev/null; then
    "$BROWSER" --kiosk --noerrdialogs --disable-infobars --no-first-run --incognito "$URL" &
    BROWSER_PID=$!
    wait -n $CAPTIONER $BROWSER_PID || true   # whichever ends first ends the kiosk (the trap stops the other)
else
    wait $CAPTIONER
fi
