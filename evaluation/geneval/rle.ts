/**
 * COCO run-length encoding of a binary mask, as pycocotools writes it (`mask.encode`): `size` is
 * [height, width]; `counts` are alternating run lengths of 0s and 1s, starting with 0s, over the
 * mask in column-major (Fortran) order, either as a plain number list or as pycocotools' compact
 * ASCII string (the form `mask.encode(...)["counts"].decode()` gives).
 */
export interface CocoRle {
  size: [number, number];
  counts: string | number[];
}

/** Run lengths of a compressed pycocotools counts string (the inverse of rleToString in maskApi.c). */
export function decodeRleString(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= s.length) throw new Error('truncated RLE string');
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new Error(`invalid character ${JSON.stringify(s[p])} in RLE string`);
      // Arithmetic rather than 32-bit shifts: maskApi.c accumulates in a C long.
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      // The last 5-bit group carries the sign: extend it.
      if (!more && c & 0x10) x -= 2 ** (5 * k);
    }
    // From the third run on, values are stored as differences to the run two back.
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** Run lengths of an RLE, checked to be non-negative and to cover exactly height × width pixels. */
export function rleCounts(rle: CocoRle): number[] {
  const counts = typeof rle.counts === 'string' ? decodeRleString(rle.counts) : rle.counts;
  const [h, w] = rle.size;
  let total = 0;
  for (const c of counts) {
    if (!Number.isInteger(c) || c < 0) throw new Error(`run length ${c} is not a non-negative integer`);
    total += c;
  }
  if (total !== h * w) throw new Error(`runs cover ${total} pixels, size ${h}×${w} has ${h * w}`);
  return counts;
}

/** The mask as row-major bytes (1 inside, 0 outside), height × width, the layout an image crop uses. */
export function rleToMask(rle: CocoRle): Uint8Array {
  const counts = rleCounts(rle);
  const [h, w] = rle.size;
  const out = new Uint8Array(h * w);
  let i = 0;
  counts.forEach((run, r) => {
    if (r % 2 === 1) {
      for (let j = i; j < i + run; j++) out[(j % h) * w + Math.floor(j / h)] = 1;
    }
    i += run;
  });
  return out;
}

/**
 * Encodes a binary mask (row-major, height × width, nonzero = inside) as pycocotools'
 * `mask.encode` does, with its compact counts string (maskApi.c rleToString), so rle.ts and
 * pycocotools both read it back.
 */
export function encodeRle(mask: ArrayLike<number>, height: number, width: number): CocoRle {
  const counts: number[] = [];
  let run = 0;
  let value = 0;
  // COCO runs are over the mask in column-major order, starting with a run of 0s.
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== value) {
        counts.push(run);
        run = 0;
        value = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts: rleCountsToString(counts) };
}

/** pycocotools' compact counts string (maskApi.c rleToString): LEB128-like 5-bit groups, deltas from the third run on. */
export function rleCountsToString(counts: readonly number[]): string {
  let s = '';
  counts.forEach((c, i) => {
    let x = i > 2 ? c - counts[i - 2] : c;
    let more = true;
    while (more) {
      const low = x - Math.floor(x / 32) * 32;
      // Arithmetic shift done in floating point: counts can exceed 32 bits in C's long.
      x = Math.floor(x / 32);
      more = low & 0x10 ? x !== -1 : x !== 0;
      s += String.fromCharCode((more ? low | 0x20 : low) + 48);
    }
  });
  return s;
}
