#!/usr/bin/python3
"""The OCR filter's held-out evaluation set: drawn text of known word boxes over photographs.

A second generator, unlike test/helpers/text-images.ts in everything the OCR stage could have
been fitted to: Pillow's FreeType renderer instead of librsvg, the Liberation, GNU FreeFont and
URW base35 faces instead of DejaVu, landscape and portrait sizes instead of 512-pixel squares,
another vocabulary (mixed case, digits, punctuation), text heights from under 1% to over 15% of
the image, paragraphs, captions on bands, logos, signs, faint and see-through text, JPEG
artefacts, and as many text-free photographs (crops, scales and mirrors of scikit-image's
photographs, textures included). No threshold or
parameter of bitprep is fitted to it: `npm run bench -- ocr` reports on it.

Truth is measured on the pixels: each word is drawn alone into a mask and its ink box taken, so
`density` is the union of word boxes over the image and `median_height` the median word height,
as stages/ocr/text-boxes.ts measureText defines them.

Usage: /usr/bin/python3 bench/ocr_heldout_set.py OUT_DIR COUNT SEED
Writes OUT_DIR/<name>.png and OUT_DIR/truth.json. Needs Debian's python3-pil, python3-numpy,
python3-skimage and the fonts-liberation, fonts-freefont-ttf and fonts-urw-base35 packages.
"""

import io
import json
import os
import random
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

SKIMAGE_DATA = '/usr/lib/python3/dist-packages/skimage/data'
PHOTOS = ['astronaut.png', 'coffee.png', 'chelsea.png', 'rocket.jpg', 'motorcycle_left.png', 'camera.png', 'coins.png',
          'moon.png', 'grass.png', 'gravel.png', 'brick.png', 'hubble_deep_field.jpg', 'horse.png', 'page.png']
# page.png is a scanned page of text: it may serve only under drawn text, never as a text-free photograph.
TEXT_FREE = [p for p in PHOTOS if p != 'page.png']

FONT_DIRS = ['/usr/share/fonts/truetype/liberation', '/usr/share/fonts/truetype/freefont', '/usr/share/fonts/opentype/urw-base35']
FONTS = [
    ('liberation', 'LiberationSans-Regular.ttf'), ('liberation', 'LiberationSans-Bold.ttf'), ('liberation', 'LiberationSerif-Regular.ttf'),
    ('liberation', 'LiberationSerif-Italic.ttf'), ('liberation', 'LiberationMono-Regular.ttf'), ('liberation', 'LiberationSansNarrow-Bold.ttf'),
    ('freefont', 'FreeSans.ttf'), ('freefont', 'FreeSansBold.ttf'), ('freefont', 'FreeSerif.ttf'), ('freefont', 'FreeSerifBoldItalic.ttf'),
    ('freefont', 'FreeMono.ttf'), ('urw-base35', 'NimbusSans-Regular.otf'), ('urw-base35', 'URWGothic-Demi.otf'),
    ('urw-base35', 'URWBookman-Light.otf'), ('urw-base35', 'C059-Roman.otf'), ('urw-base35', 'P052-Bold.otf'), ('urw-base35', 'NimbusMonoPS-Bold.otf'),
]
PACKAGES = {'liberation': 'fonts-liberation', 'freefont': 'fonts-freefont-ttf', 'urw-base35': 'fonts-urw-base35'}

WORDS = ('Harbour Station Platform Exit Open Daily Closed Sunday Fresh Bread Bakery Organic Market Street Avenue North South '
         'Museum Gallery Tickets Adults Children Parking Reserved Welcome Hotel Lobby Floor Room Conference Lecture Notes Chapter '
         'Figure Table Results Method Abstract Introduction Summary Warning Caution Danger Keep Clear Authorised Personnel Only '
         'Breakfast Lunch Dinner Menu Soup Salad Coffee Tea Juice Price Total Discount Voucher Order Number Delivery Address '
         'Phone Email Website River Bridge Castle Garden Park Trail Mountain Lake Island Village Town Council Library School').split()
SIZES = [(640, 480), (800, 600), (480, 640), (768, 512), (512, 768), (1024, 683), (600, 600)]
# Text kinds, by the word height they are drawn at (fraction of the image height) and their layout.
TEXT_KINDS = ['caption', 'logo', 'dense', 'small', 'sign', 'tiny']


def check_setup():
    missing = sorted({PACKAGES[d] for d, f in FONTS if not os.path.exists(os.path.join(dict(zip(PACKAGES, FONT_DIRS))[d], f))})
    if missing:
        sys.exit(f'ocr_heldout_set.py: missing fonts; install the Debian packages {" ".join(missing)}')
    absent = [p for p in PHOTOS if not os.path.exists(os.path.join(SKIMAGE_DATA, p))]
    if absent:
        sys.exit(f'ocr_heldout_set.py: missing {", ".join(absent)} in {SKIMAGE_DATA}; install the Debian package python3-skimage')


def font_path(entry):
    d, f = entry
    return os.path.join(dict(zip(PACKAGES, FONT_DIRS))[d], f)


def photo(rng, names, w, h):
    """A crop of a photograph, scaled to w×h, sometimes mirrored and tinted."""
    im = Image.open(os.path.join(SKIMAGE_DATA, rng.choice(names))).convert('RGB')
    scale = rng.uniform(0.55, 1.0)
    cw, ch = im.width * scale, im.height * scale
    if cw / ch > w / h:
        cw = ch * w / h
    else:
        ch = cw * h / w
    x, y = rng.uniform(0, im.width - cw), rng.uniform(0, im.height - ch)
    im = im.resize((w, h), Image.Resampling.BICUBIC, box=(x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    if rng.random() < 0.3:
        tint = np.array([rng.uniform(0.8, 1.2) for _ in range(3)])
        im = Image.fromarray(np.clip(np.asarray(im) * tint, 0, 255).astype(np.uint8))
    return im


def background(rng, w, h):
    roll = rng.random()
    if roll < 0.65:
        return photo(rng, PHOTOS, w, h), 'photo'
    if roll < 0.85:
        a, b = np.array([rng.randrange(256) for _ in range(3)]), np.array([rng.randrange(256) for _ in range(3)])
        t = np.linspace(0, 1, h)[:, None, None] if rng.random() < 0.5 else np.linspace(0, 1, w)[None, :, None]
        arr = a * (1 - t) + b * t
        return Image.fromarray(np.broadcast_to(arr, (h, w, 3)).astype(np.uint8)), 'gradient'
    return Image.new('RGB', (w, h), tuple(rng.randrange(256) for _ in range(3))), 'plain'


def word_text(rng):
    word = rng.choice(WORDS)
    roll = rng.random()
    if roll < 0.15:
        return word.upper()
    if roll < 0.25:
        return word.lower()
    if roll < 0.32:
        return f'{rng.randrange(1, 999)}'
    if roll < 0.38:
        return f'{word},'
    if roll < 0.42:
        return f'£{rng.randrange(1, 99)}.{rng.randrange(10)}0'
    return word


def ink_box(word, font, x, y, w, h):
    """The ink box of `word` drawn at (x, y), measured on its own mask; None when nothing lands inside the image."""
    mask = Image.new('L', (w, h), 0)
    ImageDraw.Draw(mask).text((x, y), word, font=font, fill=255)
    return mask.getbbox()


def contrasting(rng, bg, box, hard):
    """A text colour for the background under the box, and whether to outline it; `hard` allows faint text."""
    region = np.asarray(bg.crop(box).convert('L'), dtype=np.float64)
    light = region.mean() < 128 if region.size else True
    if hard and rng.random() < 0.15:
        # Faint: 35–60 grey levels off the background under it, unoutlined.
        level = int(np.clip(region.mean() + (1 if light else -1) * rng.randrange(35, 61), 0, 255))
        return (level,) * 3, False
    fill = (rng.randrange(225, 256),) * 3 if light else (rng.randrange(0, 40),) * 3
    if rng.random() < 0.25:
        fill = (rng.randrange(180, 256), rng.randrange(0, 80), rng.randrange(0, 80)) if light else (rng.randrange(120, 200), 0, 0)
    return fill, rng.random() < 0.3


def draw_lines(rng, img, kind, w, h, hard):
    """Draws the text of `kind` on img; returns the ink boxes of its words. `hard`: faint or see-through text may occur."""
    # Text goes on a layer composited at the end, see-through for some images.
    layer = Image.new('RGBA', (w, h), (0, 0, 0, 0))
    alpha = rng.randrange(140, 211) if hard and rng.random() < 0.2 else 255
    draw = ImageDraw.Draw(layer)
    # Word heights (ink, as a fraction of the image height) per kind; a font's ink height is about 0.7 of its size.
    lo, hi, lines, align = {
        'caption': (0.03, 0.06, rng.randint(1, 2), 'band'),
        'logo': (0.09, 0.18, rng.randint(1, 2), 'centre'),
        'dense': (0.022, 0.05, 99, 'block'),
        'small': (0.01, 0.02, rng.randint(2, 6), 'block'),
        'sign': (0.04, 0.1, rng.randint(1, 4), 'centre'),
        'tiny': (0.004, 0.008, rng.randint(3, 8), 'block'),
    }[kind]
    ink = h * rng.uniform(lo, hi)
    size = max(6, round(ink / 0.7))
    face = font_path(rng.choice(FONTS))
    font = ImageFont.truetype(face, size)
    # Every text image shows some text: a face too wide for its longest word at this size is made smaller.
    longest = max(draw.textlength(word, font=font) for word in WORDS)
    if longest > w * 0.7:
        size = max(6, int(size * w * 0.7 / longest))
        font = ImageFont.truetype(face, size)
    gap = size * rng.uniform(1.15, 1.5)
    margin = w * rng.uniform(0.03, 0.1)
    if align == 'band':
        top = h - lines * gap - size * 0.6 if rng.random() < 0.7 else size * 0.4
        band = (0, int(top - size * 0.25), w, int(top + lines * gap + size * 0.1))
        ImageDraw.Draw(img).rectangle(band, fill=(0, 0, 0) if rng.random() < 0.6 else (255, 255, 255))
    elif align == 'centre':
        top = rng.uniform(0.1, 0.9 - lines * gap / h) * h
    else:
        top = rng.uniform(0.02, 0.5) * h
    boxes = []
    # The first line always fits, so every text image shows text.
    y = max(0.0, min(top, h * 0.98 - size - 1))
    for _ in range(lines):
        if y + size > h * 0.98:
            break
        # The line's words first, as many as fit (one to three for centred text), then where it starts.
        words, width = [], 0.0
        while len(words) < (rng.randint(1, 3) if align == 'centre' else 999):
            word = word_text(rng)
            extra = draw.textlength((' ' if words else '') + word, font=font)
            if width + extra > w - 2 * margin:
                break
            words.append(word)
            width += extra
        x = margin if align != 'centre' else rng.uniform(margin, max(margin, w - margin - width))
        for word in words:
            box = ink_box(word, font, x, y, w, h)
            if box:
                fill, outline = contrasting(rng, img, box, hard)
                stroke = max(1, size // 16) if outline else 0
                draw.text((x, y), word, font=font, fill=fill + (alpha,), stroke_width=stroke, stroke_fill=tuple(255 - c for c in fill) + (alpha,))
                if stroke:
                    box = (box[0] - stroke, box[1] - stroke, box[2] + stroke, box[3] + stroke)
                boxes.append({'text': word, 'x0': max(0, box[0]), 'y0': max(0, box[1]), 'x1': min(w, box[2]), 'y1': min(h, box[3])})
            x += draw.textlength(word + ' ', font=font)
        y += gap
    img.paste(Image.alpha_composite(img.convert('RGBA'), layer).convert('RGB'))
    return boxes


def measures(boxes, w, h):
    """measureText of stages/ocr/text-boxes.ts: union of word boxes over the image, heights over the image height."""
    union = np.zeros((h, w), dtype=bool)
    for b in boxes:
        union[b['y0']:b['y1'], b['x0']:b['x1']] = True
    heights = sorted((b['y1'] - b['y0']) / h for b in boxes)
    return {
        'ocr_density': float(union.sum()) / (w * h),
        'ocr_words': len(boxes),
        'ocr_median_height': float(np.median(heights)) if heights else None,
        'ocr_min_height': heights[0] if heights else None,
    }


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-4])
    out, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    check_setup()
    os.makedirs(out, exist_ok=True)
    rng = random.Random(seed)
    truth = []
    for i in range(count):
        w, h = rng.choice(SIZES)
        if i % 2 == 0:
            kind = 'none'
            img, bg = photo(rng, TEXT_FREE, w, h), 'photo'
            boxes = []
        else:
            kind = TEXT_KINDS[(i // 2) % len(TEXT_KINDS)]
            img, bg = background(rng, w, h)
            boxes = draw_lines(rng, img, kind, w, h, hard=bg != 'plain')
        # Photographs and gradients come as the web has them: JPEG at LAION's usual qualities
        # (plain fills stay lossless, so test/ocr-heldout-set.test.ts can check boxes to the pixel).
        if bg != 'plain' and rng.random() < 0.8:
            buf = io.BytesIO()
            img.save(buf, 'JPEG', quality=rng.randrange(55, 93))
            img = Image.open(io.BytesIO(buf.getvalue())).convert('RGB')
        name = f'{i:04d}-{kind}-{bg}'
        img.save(os.path.join(out, f'{name}.png'), compress_level=1)
        truth.append({'name': name, 'kind': kind, 'background': bg, 'width': w, 'height': h, 'words': boxes, 'truth': measures(boxes, w, h)})
    with open(os.path.join(out, 'truth.json'), 'w') as f:
        json.dump(truth, f)


if __name__ == '__main__':
    main()
