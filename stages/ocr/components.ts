/** A connected component of a thresholded stroke response: box, area and where its pixels are listed. */
export interface Comp {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  area: number;
  /** Where its pixel indices start in the level's pixel list. */
  p0: number;
  /** Sum of the stroke response over the component's pixels. */
  resp: number;
}

/**
 * Components (8-connected) of the pixels at or above `t`, with boxes, pixel counts and their pixel
 * indices (in `pixels`, from `p0`). Labelled run by run (horizontal runs joined to the touching runs
 * of the row above with union-find), so the cost follows the runs, not every pixel's neighbours.
 */
export function components(resp: Uint8Array, t: number, w: number, h: number, keep: (x0: number, y0: number, x1: number, y1: number, area: number) => boolean = () => true): { comps: Comp[]; pixels: Int32Array } {
  let cap = 4096;
  let rs = new Int32Array(cap);
  let re = new Int32Array(cap);
  const rowStart = new Int32Array(h + 1);
  let nr = 0;
  // Four pixels at a time where all four are below t (most of an image): a byte b >= t sets the
  // high bit of (b & 0x7f) + (128 - t), or has it set already.
  const words = (resp.byteOffset & 3) === 0 ? new Uint32Array(resp.buffer, resp.byteOffset, resp.length >> 2) : null;
  const bias = (128 - t) * 0x01010101;
  for (let y = 0; y < h; y++) {
    rowStart[y] = nr;
    const row = y * w;
    let x = 0;
    while (x < w) {
      const p = row + x;
      if (words && (p & 3) === 0 && x + 4 <= w && ((((words[p >> 2] & 0x7f7f7f7f) + bias) | words[p >> 2]) & 0x80808080) === 0) {
        x += 4;
        continue;
      }
      if (resp[p] < t) {
        x++;
        continue;
      }
      const start = x;
      while (x < w && resp[row + x] >= t) x++;
      if (nr === cap) {
        cap *= 2;
        const a = new Int32Array(cap);
        a.set(rs);
        rs = a;
        const b = new Int32Array(cap);
        b.set(re);
        re = b;
      }
      rs[nr] = start;
      re[nr] = x;
      nr++;
    }
  }
  rowStart[h] = nr;
  const parent = new Int32Array(nr);
  for (let i = 0; i < nr; i++) parent[i] = i;
  const find = (i: number): number => {
    let r = i;
    while (parent[r] !== r) r = parent[r];
    while (parent[i] !== r) {
      const n = parent[i];
      parent[i] = r;
      i = n;
    }
    return r;
  };
  for (let y = 1; y < h; y++) {
    let j = rowStart[y - 1];
    const jEnd = rowStart[y];
    for (let i = rowStart[y]; i < rowStart[y + 1]; i++) {
      // Runs [a, b) of consecutive rows touch (8-connected) when a_prev <= b_cur and b_prev >= a_cur.
      while (j < jEnd && re[j] < rs[i]) j++;
      for (let k = j; k < jEnd && rs[k] <= re[i]; k++) {
        const ri = find(i);
        const rk = find(k);
        if (ri !== rk) parent[ri < rk ? rk : ri] = ri < rk ? ri : rk;
      }
    }
  }
  // Boxes and areas in typed arrays first; only components that `keep` accepts get stats and pixels.
  const compOf = new Int32Array(nr).fill(-1);
  const runComp = new Int32Array(nr);
  let nc = 0;
  const bx0: number[] = [], bx1: number[] = [], by0: number[] = [], by1: number[] = [], ar: number[] = [];
  for (let y = 0; y < h; y++) {
    for (let r = rowStart[y]; r < rowStart[y + 1]; r++) {
      const root = find(r);
      let ci = compOf[root];
      if (ci < 0) {
        ci = compOf[root] = nc++;
        bx0.push(w);
        bx1.push(0);
        by0.push(y);
        by1.push(y + 1);
        ar.push(0);
      }
      runComp[r] = ci;
      if (rs[r] < bx0[ci]) bx0[ci] = rs[r];
      if (re[r] > bx1[ci]) bx1[ci] = re[r];
      by1[ci] = y + 1;
      ar[ci] += re[r] - rs[r];
    }
  }
  const kept = new Int32Array(nc).fill(-1);
  const comps: Comp[] = [];
  let total = 0;
  for (let ci = 0; ci < nc; ci++) {
    if (!keep(bx0[ci], by0[ci], bx1[ci], by1[ci], ar[ci])) continue;
    kept[ci] = comps.length;
    comps.push({ x0: bx0[ci], y0: by0[ci], x1: bx1[ci], y1: by1[ci], area: ar[ci], resp: 0, p0: total });
    total += ar[ci];
  }
  const pixels = new Int32Array(total);
  const fill = comps.map((c) => c.p0);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let r = rowStart[y]; r < rowStart[y + 1]; r++) {
      const k = kept[runComp[r]];
      if (k < 0) continue;
      const c = comps[k];
      let o = fill[k];
      let rr = 0;
      for (let x = row + rs[r], end = row + re[r]; x < end; x++) {
        rr += resp[x];
        pixels[o++] = x;
      }
      fill[k] = o;
      c.resp += rr;
    }
  }
  return { comps, pixels };
}
