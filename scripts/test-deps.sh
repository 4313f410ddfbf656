#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing, so `npm test` is the whole
# set-up on a fresh machine. Needs root (or sudo) only when something is missing.
set -euo pipefail

need=()
# Fixture images draw SVG text; librsvg needs a font on the system.
if ! fc-list 2>/dev/null | grep -i 'dejavu' >/dev/null; then need+=(fonts-dejavu-core fontconfig); fi
command -v tar >/dev/null || need+=(tar)
# The OCR bench's held-out set (bench/ocr_heldout_set.py, checked by test/ocr-heldout-set.test.ts)
# draws with faces unlike the fixtures' DejaVu.
[ -f /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf ] || need+=(fonts-liberation)
[ -f /usr/share/fonts/truetype/freefont/FreeSans.ttf ] || need+=(fonts-freefont-ttf)
[ -f /usr/share/fonts/opentype/urw-base35/NimbusSans-Regular.otf ] || need+=(fonts-urw-base35)
# OCR tests draw text over the real photographs Debian's scikit-image ships.
[ -f /usr/lib/python3/dist-packages/skimage/data/astronaut.png ] || need+=(python3-skimage)
/usr/bin/python3 -c 'import PIL, numpy' 2>/dev/null || need+=(python3-pil python3-numpy) # pil-resize tests compare with Debian's Pillow
/usr/bin/python3 -c 'import torch' 2>/dev/null || need+=(python3-torch) # tools/serve_bit_encoder.py, the encoder in PyTorch, on CPU
# Queue executor tests run a real redis-server on a free port; the report test opens the HTML in headless chromium.
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "test-deps: installing ${need[*]} from Debian" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "test-deps: missing ${need[*]} and not root; install them with apt-get" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
