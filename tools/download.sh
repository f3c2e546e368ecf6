#!/usr/bin/env bash
# Download everything the VQA 2.0 pipeline reads into DATAROOT (default: data):
#   VQA v2 questions and annotations, the adaptive bottom-up-attention
#   features (trainval, test2015), GloVe 6B, Visual Genome v1.2 questions and
#   image metadata, the MS COCO 2017 caption annotations, and (as the
#   original's download.sh) the pickle caches of the released model,
#   cache.pkl.tgz, unpacked into DATAROOT/cache without overwriting a file
#   already there; tools/process.sh then reuses their answer vocabulary, whose
#   label order the released classifier follows. Google Drive may answer with
#   a confirmation page instead: then the script prints a manual-download note
#   (this step is optional: only the released model needs it) and goes on.
#   RELEASED_CACHES=0 skips it (tools/process.sh then builds the vocabulary).
# Each step is skipped when its files are already there; archives are
# downloaded to *.part and unpacked into a temporary folder, so an
# interrupted run never leaves a file that looks complete. Then run
#   tools/process.sh DATAROOT
# Set FEATURES36=1 to also fetch the fixed-36-box features (trainval_36.zip, test2015_36.zip).
#
# Usage: tools/download.sh [DATAROOT]
set -euo pipefail

DATAROOT="${1:-data}"
mkdir -p "$DATAROOT"

VQA_URL=https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa
FEATURES_URL=https://imagecaption.blob.core.windows.net/imagecaption
GLOVE_URL=http://nlp.stanford.edu/data/glove.6B.zip
VG_URL=http://visualgenome.org/static/data/dataset
COCO_CAPTIONS_URL=http://images.cocodataset.org/annotations/annotations_trainval2017.zip
CACHE_URL='https://drive.google.com/uc?export=download&id=1m5pL9gOkcnLZ_NuANmnDFIcil3NQVmZc'

have_all() {  # have_all FILE...: true when every file exists and is not empty
  local file
  for file in "$@"; do
    [ -s "$file" ] || return 1
  done
}

fetch() {  # fetch URL: download into $DATAROOT, resuming a previous *.part
  local url=$1 target="$DATAROOT/$(basename "$1")"
  [ -s "$target" ] && return 0
  echo "downloading $url"
  if command -v wget >/dev/null 2>&1; then
    wget -c -O "$target.part" "$url"
  else
    curl -fL --retry 3 -C - -o "$target.part" "$url"
  fi
  mv "$target.part" "$target"
}

unpack() {  # unpack ZIP DEST [MEMBER...]: unzip into a temporary folder, then move into DEST
  local zip=$1 dest=$2
  shift 2
  local tmp="$DATAROOT/.unpack.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp" "$dest"
  unzip -q -o "$zip" "$@" -d "$tmp"
  cp -r -l "$tmp"/. "$dest"/ 2>/dev/null || cp -r "$tmp"/. "$dest"/
  rm -rf "$tmp" "$zip"
}

download_once() {  # download_once URL FILE: fetch URL into FILE, no resume; false on failure
  if command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    curl -fsL -o "$2" "$1"
  fi
}

unpack_keep() {  # unpack_keep TGZ DEST: add the archive's files that DEST lacks, never overwrite;
  # TGZ is removed unless a file of DEST differs from the archive's
  local tgz=$1 dest=$2 tmp="$DATAROOT/.unpack.$$" kept=0 file
  rm -rf "$tmp"
  mkdir -p "$tmp" "$dest"
  if ! tar -xf "$tgz" -C "$tmp"; then
    rm -rf "$tmp"
    echo "error: $tgz is not a readable tar archive; delete it and download it again" >&2
    exit 1
  fi
  while IFS= read -r file; do
    if [ -e "$dest/$file" ]; then
      cmp -s "$tmp/$file" "$dest/$file" && continue
      echo "  kept the existing $dest/$file (differs from the archive's; not overwritten)"
      kept=1
    else
      mkdir -p "$(dirname "$dest/$file")"
      mv "$tmp/$file" "$dest/$file"
    fi
  done < <(cd "$tmp" && find . -type f | sed 's|^\./||')
  rm -rf "$tmp"
  if [ "$kept" = 1 ]; then
    echo "  $tgz kept: delete the files above and re-run to unpack them too"
  else
    rm "$tgz"
  fi
}

released_caches() {  # the released model's pickle caches (see the header)
  local cache="$DATAROOT/cache" tgz="$DATAROOT/cache/cache.pkl.tgz"
  if [ "${RELEASED_CACHES:-1}" = 0 ]; then
    echo "[skip] released caches: RELEASED_CACHES=0"
    return 0
  fi
  if [ ! -s "$tgz" ]; then
    if [ -e "$cache/trainval_ans2label.pkl" ]; then
      echo "[skip] released caches: $cache/trainval_ans2label.pkl already there"
      return 0
    fi
    echo "[get] released caches"
    mkdir -p "$cache"
    if ! download_once "$CACHE_URL" "$tgz.part" || ! tar -tf "$tgz.part" >/dev/null 2>&1; then
      rm -f "$tgz.part"
      echo "note: released caches (optional, for the released model): download by hand"
      echo "    $CACHE_URL"
      echo "  to $tgz (confirm the Google Drive page if one is shown), then re-run this script"
      return 0
    fi
    mv "$tgz.part" "$tgz"
  fi
  echo "[unpack] released caches: $tgz -> $cache"
  unpack_keep "$tgz" "$cache"
}

step() {  # step NAME URL DEST [MEMBER...] -- FILE...: fetch+unpack unless every FILE exists
  local name=$1 url=$2 dest=$3
  shift 3
  local members=()
  while [ "$1" != "--" ]; do members+=("$1"); shift; done
  shift
  if have_all "$@"; then
    echo "[skip] $name: already there"
    return 0
  fi
  echo "[get] $name"
  fetch "$url"
  unpack "$DATAROOT/$(basename "$url")" "$dest" "${members[@]+"${members[@]}"}"
  have_all "$@" || { echo "error: $name: $* still missing after unpacking $url" >&2; exit 1; }
}

# VQA v2 questions (test zip holds test2015 and test-dev2015) and annotations
step "VQA train questions" "$VQA_URL/v2_Questions_Train_mscoco.zip" "$DATAROOT" -- \
  "$DATAROOT/v2_OpenEnded_mscoco_train2014_questions.json"
step "VQA val questions" "$VQA_URL/v2_Questions_Val_mscoco.zip" "$DATAROOT" -- \
  "$DATAROOT/v2_OpenEnded_mscoco_val2014_questions.json"
step "VQA test questions" "$VQA_URL/v2_Questions_Test_mscoco.zip" "$DATAROOT" -- \
  "$DATAROOT/v2_OpenEnded_mscoco_test2015_questions.json" \
  "$DATAROOT/v2_OpenEnded_mscoco_test-dev2015_questions.json"
step "VQA train annotations" "$VQA_URL/v2_Annotations_Train_mscoco.zip" "$DATAROOT" -- \
  "$DATAROOT/v2_mscoco_train2014_annotations.json"
step "VQA val annotations" "$VQA_URL/v2_Annotations_Val_mscoco.zip" "$DATAROOT" -- \
  "$DATAROOT/v2_mscoco_val2014_annotations.json"

# Adaptive bottom-up-attention features (10-100 boxes per image)
step "trainval features" "$FEATURES_URL/trainval.zip" "$DATAROOT" -- \
  "$DATAROOT/trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.0" \
  "$DATAROOT/trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.1" \
  "$DATAROOT/trainval/karpathy_val_resnet101_faster_rcnn_genome.tsv" \
  "$DATAROOT/trainval/karpathy_test_resnet101_faster_rcnn_genome.tsv"
step "test2015 features" "$FEATURES_URL/test2015.zip" "$DATAROOT" -- \
  "$DATAROOT/test2015/test2015_resnet101_faster_rcnn_genome.tsv"
if [ "${FEATURES36:-0}" = 1 ]; then
  step "trainval fixed-36 features" "$FEATURES_URL/trainval_36.zip" "$DATAROOT" -- \
    "$DATAROOT/trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv"
  step "test2015 fixed-36 features" "$FEATURES_URL/test2015_36.zip" "$DATAROOT" -- \
    "$DATAROOT/test2015_36/test2015_resnet101_faster_rcnn_genome_36.tsv"
fi

# GloVe 6B (50/100/200/300 d) into $DATAROOT/glove
step "GloVe 6B" "$GLOVE_URL" "$DATAROOT/glove" -- "$DATAROOT/glove/glove.6B.300d.txt"

# Visual Genome v1.2 (augmentation and tf-idf)
step "Visual Genome questions" "$VG_URL/question_answers.json.zip" "$DATAROOT" -- \
  "$DATAROOT/question_answers.json"
step "Visual Genome image metadata" "$VG_URL/image_data.json.zip" "$DATAROOT" -- \
  "$DATAROOT/image_data.json"

# MS COCO 2017 captions (tf-idf); only the caption files are unpacked
step "COCO 2017 captions" "$COCO_CAPTIONS_URL" "$DATAROOT" \
  annotations/captions_train2017.json annotations/captions_val2017.json -- \
  "$DATAROOT/annotations/captions_train2017.json" "$DATAROOT/annotations/captions_val2017.json"

# Pickle caches of the released model (answer vocabulary, targets)
released_caches

echo "done; now run: tools/process.sh $DATAROOT"
