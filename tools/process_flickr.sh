#!/usr/bin/env bash
# Prepare Flickr30k Entities for training (after tools/download_flickr.sh).
#
# Usage (from the repository root):  bash tools/process_flickr.sh [DATAROOT]
# DATAROOT defaults to data/flickr30k.
#  1. unpack DATAROOT/Flickr30kEntities.tar.gz when DATAROOT/Flickr30kEntities has no
#     Sentences/ yet (the layout the original README asked for);
#  2. build DATAROOT/dictionary.pkl and DATAROOT/glove6b_init_300d.npy from the
#     captions and GloVe (DATAROOT/glove/glove.6B.300d.txt, else glove/ beside DATAROOT:
#     data/glove for data/flickr30k, where tools/download_flickr.sh puts it; GLOVE=<file>
#     or GLOVE=kumo overrides, as for tools/process.sh),
#     in the original's word order: images in the order of the pickled id
#     sets DATAROOT/{train,val,test}_ids.pkl, or, where absent, of the set the
#     original's converter builds from the names in DATAROOT/flickr30k_images/ (else
#     from the split files, with a note) (tools/create_dictionary.py --task flickr);
#  3. write the absent {train,val,test}_ids.pkl, as the original, and convert the
#     detector TSV files into DATAROOT/{train,val,test}.hdf5 and {split}_imgid2idx.pkl
#     (tools/adaptive_detection_features_converter.py --task flickr).
# Only adaptive 10-100 box bottom-up-attention features are used; FEATURE_DIM sets the values
# per box of the TSV files (default 2048), as for tools/process.sh.
set -euo pipefail

DATAROOT="${1:-data/flickr30k}"
source "$(dirname "$0")/interpreter.sh"  # REPO, PYTHON
FEATURE_DIM="${FEATURE_DIM:-2048}"
TARBALL="$DATAROOT/Flickr30kEntities.tar.gz"

if [ ! -d "$DATAROOT/Flickr30kEntities/Sentences" ]; then
    if [ ! -f "$TARBALL" ]; then
        echo "error: neither $DATAROOT/Flickr30kEntities/Sentences nor $TARBALL exists;" \
             "run tools/download_flickr.sh $DATAROOT first" >&2
        exit 2
    fi
    tar xf "$TARBALL" -C "$DATAROOT"
fi

glove_args=()
if [ -n "${GLOVE:-}" ]; then glove_args=(--glove "$GLOVE"); fi

"$PYTHON" "$REPO"/tools/create_dictionary.py --task flickr --dataroot "$DATAROOT" \
  "${glove_args[@]+"${glove_args[@]}"}"
"$PYTHON" "$REPO"/tools/adaptive_detection_features_converter.py --task flickr --dataroot "$DATAROOT" \
  --feature_dim "$FEATURE_DIM"
