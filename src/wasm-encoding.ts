/**
 * The few pieces of the WebAssembly binary format that bitprep's hand-assembled SIMD kernels need
 * (stages/ocr/text-candidates.ts, evaluation/metrics/product-simd.ts): kernels small enough that
 * writing their bytes beats adding a toolchain or a dependency.
 */

/** Unsigned LEB128, the format's integer encoding. */
export const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};

/** A vector: its length, then its items. */
export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];

/** A section: id, byte length, body. */
export const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

/** A name (ASCII). */
export const str = (t: string): number[] => vec([...t].map((c) => [c.charCodeAt(0)]));
