#!/usr/bin/env bash
# Fetch the Flickr30k Entities data for phrase grounding (FORMATS.md section 7).
#
# Usage (from the repository root):  bash tools/download_flickr.sh [DATAROOT]
# DATAROOT defaults to data/flickr30k; GloVe goes to the glove/ folder beside it (data/glove;
# GLOVE_DIR overrides), where tools/process_flickr.sh looks for it.
# Every step is skipped when its files are already in place, so the script can
# be re-run after finishing a manual step. Afterwards run tools/process_flickr.sh.
#
# Steps:
#  1. Annotations (https://github.com/BryanPlummer/flickr30k_entities): annotations.zip
#     (Annotations/<id>.xml and Sentences/<id>.txt) and the split files train.txt,
#     val.txt, test.txt (29,783 / 1,000 / 1,000 image ids), placed in
#     DATAROOT/Flickr30kEntities/. The original ban-vqa README asked for these to be
#     downloaded by hand and packed as DATAROOT/Flickr30kEntities.tar.gz (holding a
#     Flickr30kEntities/ folder); such a tarball is also accepted and is unpacked by
#     tools/process_flickr.sh.
#  2. Detector features: the bottom-up-attention (Faster R-CNN ResNet-101, Visual
#     Genome) adaptive 10-100 box features of the Flickr30k images, as TSV files
#     train_flickr30k_resnet101_faster_rcnn_genome.tsv.1 and .tsv.2,
#     val_flickr30k_resnet101_faster_rcnn_genome.tsv.3 and
#     test_flickr30k_resnet101_faster_rcnn_genome.tsv.3 in DATAROOT. The original
#     ban-vqa script fetched them from Google Drive as flickr30k_features.zip
#     (https://drive.google.com/uc?export=download&id=11OD_qq7ITBarJwWZfi0bWIRw3HPEaHwE);
#     Google Drive asks for a confirmation for large files, so this is a manual step:
#     download that zip into DATAROOT and re-run this script to unpack it.
#  3. GloVe 6B vectors (http://nlp.stanford.edu/data/glove.6B.zip) into GLOVE_DIR (data/glove);
#     the Flickr dictionary uses glove.6B.300d.txt.
set -euo pipefail

DATAROOT="${1:-data/flickr30k}"
GLOVE_DIR="${GLOVE_DIR:-$(dirname "$DATAROOT")/glove}"
ENTITIES_DIR="$DATAROOT/Flickr30kEntities"
ENTITIES_URL="https://raw.githubusercontent.com/BryanPlummer/flickr30k_entities/master"
FEATURES_ZIP="$DATAROOT/flickr30k_features.zip"
source "$(dirname "$0")/interpreter.sh"  # REPO, PYTHON
FEATURES_DRIVE="https://drive.google.com/uc?export=download&id=11OD_qq7ITBarJwWZfi0bWIRw3HPEaHwE"
missing_manual=0

mkdir -p "$ENTITIES_DIR" "$GLOVE_DIR"

fetch() {  # fetch URL DEST: download to a temporary name, then rename
    wget --no-verbose -O "$2.part" "$1" && mv "$2.part" "$2"
}

unpack_zip() {  # unpack_zip ZIP DIR (python's zipfile, so no unzip binary is needed)
    "$PYTHON" -m zipfile -e "$1" "$2"
}

# 1. Flickr30k Entities annotations and split files
if [ -d "$ENTITIES_DIR/Sentences" ] && [ -d "$ENTITIES_DIR/Annotations" ]; then
    echo "annotations: $ENTITIES_DIR/Sentences and Annotations present, skipped"
elif [ -f "$DATAROOT/Flickr30kEntities.tar.gz" ]; then
    echo "annotations: $DATAROOT/Flickr30kEntities.tar.gz present; tools/process_flickr.sh unpacks it"
else
    [ -f "$ENTITIES_DIR/annotations.zip" ] || fetch "$ENTITIES_URL/annotations.zip" "$ENTITIES_DIR/annotations.zip"
    unpack_zip "$ENTITIES_DIR/annotations.zip" "$ENTITIES_DIR"
    rm "$ENTITIES_DIR/annotations.zip"
fi
for split in train val test; do
    if [ -f "$ENTITIES_DIR/$split.txt" ]; then
        echo "split file: $ENTITIES_DIR/$split.txt present, skipped"
    elif [ ! -f "$DATAROOT/Flickr30kEntities.tar.gz" ]; then
        fetch "$ENTITIES_URL/$split.txt" "$ENTITIES_DIR/$split.txt"
    fi
done

# 2. bottom-up-attention features (manual download, see the header)
if ls "$DATAROOT"/*_flickr30k_resnet101_faster_rcnn_genome.tsv.* >/dev/null 2>&1 \
        || [ -f "$DATAROOT/train.hdf5" ]; then
    echo "features: TSV or converted HDF5 files present in $DATAROOT, skipped"
elif [ -f "$FEATURES_ZIP" ]; then
    unpack_zip "$FEATURES_ZIP" "$DATAROOT"
    rm "$FEATURES_ZIP"
else
    echo "features: MANUAL STEP: download flickr30k_features.zip from"
    echo "    $FEATURES_DRIVE"
    echo "  into $FEATURES_ZIP (confirm the Google Drive warning page), then re-run this script"
    missing_manual=1
fi

# 3. GloVe
if [ -f "$GLOVE_DIR/glove.6B.300d.txt" ]; then
    echo "glove: $GLOVE_DIR/glove.6B.300d.txt present, skipped"
else
    fetch http://nlp.stanford.edu/data/glove.6B.zip "$GLOVE_DIR/glove.6B.zip"
    unpack_zip "$GLOVE_DIR/glove.6B.zip" "$GLOVE_DIR"
    rm "$GLOVE_DIR/glove.6B.zip"
fi

if [ "$missing_manual" -ne 0 ]; then
    echo "some manual steps remain (see above)" >&2
    exit 1
fi
echo "done; next: bash tools/process_flickr.sh $DATAROOT"
