#!/usr/bin/env bash
# Train a VELM on your own pictures: a folder of images plus a CSV of captions.
#
#   examples/train_on_csv.sh [WORKDIR]
#
# To show the whole path without your data, it first writes a caption set with the synthetic camera
# (replace that step with your own images and captions.csv: columns "image,caption", one row per
# caption, several rows per image allowed). Then it trains, evaluates on held-out rows and captions
# a few images. Sizes are small so it finishes in about a minute; raise them for a real model.
set -euo pipefail
WORK=${1:-runs/example-csv}
BIN=${BIN:-$(dirname "$0")/../.venv/bin}
COUNT=${COUNT:-1500}      # images in the example caption set
EPOCHS=${EPOCHS:-3}

"$BIN/velm-edge" synth --out "$WORK/train" --count "$COUNT" --seed 0 --size 64
"$BIN/velm-edge" synth --out "$WORK/test" --count 100 --seed 900000 --size 64

"$BIN/velm-convert" train --dataset csv --annotations "$WORK/train/captions.csv" --images "$WORK/train" \
    --image-size 64 --epochs "$EPOCHS" --out "$WORK/model" --no-progress

"$BIN/velm-convert" evaluate "$WORK/model/model.keras" --dataset csv \
    --annotations "$WORK/test/captions.csv" --images "$WORK/test" --json "$WORK/eval.json"

"$BIN/velm-convert" caption "$WORK/model/model.keras" "$WORK/test/scene_000000.png" "$WORK/test/scene_000001.png"
