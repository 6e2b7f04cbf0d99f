#!/bin/sh
# Caption an image with a running `velm-edge serve`, from the shell: one curl line.
#   velm-edge serve &                       # http://127.0.0.1:8090, loopback only
#   sh examples/caption_http.sh photo.jpg   # prints the caption as JSON
# VELM_URL overrides the address; VELM_TOKEN is sent as a bearer token when set.
set -eu
curl --silent --show-error --fail-with-body --data-binary "@$1" -H "Content-Type: application/octet-stream" \
     ${VELM_TOKEN:+-H "Authorization: Bearer $VELM_TOKEN"} "${VELM_URL:-http://127.0.0.1:8090}/v1/caption"
echo
