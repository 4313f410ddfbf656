import { STROKE_SIMD_WASM } from './stroke-simd.wasm.js';

// Stroke morphology of a grey image (top-hat and black-hat with a 5×5 square) for the text-candidate
// finder (text-candidates.ts): a plain TypeScript reference and the same on WebAssembly SIMD.

/**
 * Row pass of a 5-wide min filter on `a` and a 5-wide max filter on `b` at once (borders clamped):
 * the two filters of one morphology stage share the loop.
 */
function rowMinMax5(a: Uint8Array, b: Uint8Array, mn: Uint8Array, mx: Uint8Array, w: number, h: number): void {
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let i = row + 2, end = row + w - 2; i < end; i++) {
      let m = a[i - 2], v = a[i - 1];
      if (v < m) m = v;
      v = a[i]; if (v < m) m = v;
      v = a[i + 1]; if (v < m) m = v;
      v = a[i + 2]; if (v < m) m = v;
      mn[i] = m;
      let M = b[i - 2];
      v = b[i - 1]; if (v > M) M = v;
      v = b[i]; if (v > M) M = v;
      v = b[i + 1]; if (v > M) M = v;
      v = b[i + 2]; if (v > M) M = v;
      mx[i] = M;
    }
  }
  rowBorders(a, b, mn, mx, w, h);
}

function rowBorders(a: Uint8Array, b: Uint8Array, mn: Uint8Array, mx: Uint8Array, w: number, h: number): void {
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let e = 0; e < 4; e++) {
      const x = e < 2 ? e : w - 4 + e;
      if (x < 0 || x >= w || (e >= 2 && x < 2)) continue;
      const lo = x - 2 < 0 ? 0 : x - 2;
      const hi = x + 2 >= w ? w - 1 : x + 2;
      let m = 255, M = 0;
      for (let k = row + lo; k <= row + hi; k++) {
        if (a[k] < m) m = a[k];
        if (b[k] > M) M = b[k];
      }
      mn[row + x] = m;
      mx[row + x] = M;
    }
  }
}

/** Column pass of the same pair of filters, a row vector at a time (cache-friendly, no transpose). */
function colMinMax5(a: Uint8Array, b: Uint8Array, mn: Uint8Array, mx: Uint8Array, w: number, h: number): void {
  for (let y = 0; y < h; y++) {
    const r0 = (y - 2 < 0 ? 0 : y - 2) * w;
    const r1 = (y - 1 < 0 ? 0 : y - 1) * w;
    const r2 = y * w;
    const r3 = (y + 1 >= h ? h - 1 : y + 1) * w;
    const r4 = (y + 2 >= h ? h - 1 : y + 2) * w;
    for (let x = 0; x < w; x++) {
      let m = a[r0 + x], v = a[r1 + x];
      if (v < m) m = v;
      v = a[r2 + x]; if (v < m) m = v;
      v = a[r3 + x]; if (v < m) m = v;
      v = a[r4 + x]; if (v < m) m = v;
      mn[r2 + x] = m;
      let M = b[r0 + x];
      v = b[r1 + x]; if (v > M) M = v;
      v = b[r2 + x]; if (v > M) M = v;
      v = b[r3 + x]; if (v > M) M = v;
      v = b[r4 + x]; if (v > M) M = v;
      mx[r2 + x] = M;
    }
  }
}

/**
 * White top-hat (g − opening: bright strokes) and black-hat (closing − g: dark strokes) of a grey
 * image with a 5×5 square: strokes up to 4 px wide.
 */
export function strokeResponses(gray: Uint8Array, w: number, h: number): { bright: Uint8Array; dark: Uint8Array } {
  const n = w * h;
  const t1 = new Uint8Array(n);
  const t2 = new Uint8Array(n);
  const ero = new Uint8Array(n);
  const dil = new Uint8Array(n);
  rowMinMax5(gray, gray, t1, t2, w, h);
  colMinMax5(t1, t2, ero, dil, w, h);
  // Opening = max filter of the erosion; closing = min filter of the dilation.
  rowMinMax5(dil, ero, t1, t2, w, h);
  const bright = ero;
  const dark = dil;
  colMinMax5(t1, t2, dark, bright, w, h);
  for (let i = 0; i < n; i++) {
    bright[i] = gray[i] - bright[i];
    dark[i] = dark[i] - gray[i];
  }
  return { bright, dark };
}

// The same responses with WebAssembly SIMD, 16 pixels an instruction: stroke-simd.wat (its two
// functions documented there), assembled by scripts/build-wasm.mjs. `strokeResponses` above is the
// reference.

interface SimdKernel {
  memory: WebAssembly.Memory;
  minmax5: (a: number, b: number, mn: number, mx: number, i: number, end: number, s: number) => void;
  subsat: (a: number, b: number, out: number, n: number) => void;
}

let kernel: SimdKernel | null | undefined;

/** The SIMD kernel, or null where WebAssembly SIMD is missing (then the plain TypeScript path runs). */
function simdKernel(): SimdKernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const bytes = Buffer.from(STROKE_SIMD_WASM, 'base64');
    const memory = new WebAssembly.Memory({ initial: 1 });
    const inst = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(bytes)), { e: { m: memory } });
    const ex = inst.exports as unknown as Omit<SimdKernel, 'memory'>;
    kernel = { memory, minmax5: ex.minmax5, subsat: ex.subsat };
  } catch {
    kernel = null;
  }
  return kernel;
}

/** Clamped 5-tap min/max at the pixels a flat SIMD pass gets wrong: two columns each side (rows) or two rows each end (columns). */
function fixBorders(a: Uint8Array, b: Uint8Array, mn: Uint8Array, mx: Uint8Array, w: number, h: number, alongRows: boolean): void {
  if (alongRows) {
    rowBorders(a, b, mn, mx, w, h);
    return;
  }
  for (const y of [0, 1, h - 2, h - 1]) {
    if (y < 0 || y >= h) continue;
    for (let x = 0; x < w; x++) {
      let m = 255, M = 0;
      for (let yy = Math.max(0, y - 2); yy <= Math.min(h - 1, y + 2); yy++) {
        const k = yy * w + x;
        if (a[k] < m) m = a[k];
        if (b[k] > M) M = b[k];
      }
      mn[y * w + x] = m;
      mx[y * w + x] = M;
    }
  }
}

/** `strokeResponses` on the SIMD kernel; identical output. Falls back to the TypeScript path. */
export function strokeResponsesFast(gray: Uint8Array, w: number, h: number): { bright: Uint8Array; dark: Uint8Array } {
  const k = simdKernel();
  const n = w * h;
  if (!k || w < 8 || h < 8) return strokeResponses(gray, w, h);
  // Seven buffers with 64 bytes of slack around each: vector loads and stores run past the ends.
  const slot = n + 128;
  const need = 64 + 7 * slot;
  const have = k.memory.buffer.byteLength;
  if (need > have) k.memory.grow(Math.ceil((need - have) / 65536));
  const mem = new Uint8Array(k.memory.buffer);
  const [G, T1, T2, E, D, B, K] = [0, 1, 2, 3, 4, 5, 6].map((i) => 64 + i * slot);
  const view = (off: number) => mem.subarray(off, off + n);
  mem.set(gray.subarray(0, n), G);
  const pass = (a: number, b: number, mn: number, mx: number, rows: boolean) => {
    if (rows) k.minmax5(a, b, mn, mx, 2, n - 2, 1);
    else k.minmax5(a, b, mn, mx, 2 * w, n - 2 * w, w);
    fixBorders(view(a), view(b), view(mn), view(mx), w, h, rows);
  };
  pass(G, G, T1, T2, true);
  pass(T1, T2, E, D, false);
  pass(D, E, T1, T2, true);
  pass(T1, T2, D, E, false); // D = closing, E = opening
  k.subsat(G, E, B, n);
  k.subsat(D, G, K, n);
  return { bright: view(B).slice(), dark: view(K).slice() };
}
