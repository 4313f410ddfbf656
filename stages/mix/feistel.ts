import { fmix32 } from '../../src/fmix32.js';
import { deriveSeed } from './hash.js';

/**
 * A seeded pseudorandom permutation of [0, n): the training mix's global shuffle. A balanced
 * Feistel network over the smallest even number of bits that covers n, with cycle-walking (values
 * that land at or beyond n are encrypted again until they fall inside), so it is a bijection on
 * [0, n) itself.
 *
 * Why a permutation function instead of sorting by random keys: the position of the m-th sample
 * is computed from m alone, in O(1) time and no memory, by whichever process meets that sample.
 * A shuffle of 600M rows then needs no 600M-entry sort (4.8 GB of keys) and no coordination.
 * Six rounds of a hash round function exceed the four Luby–Rackoff need for a pseudorandom
 * permutation; cycle-walking costs under four encryptions per value on average, as the domain is < 4n.
 */
export class FeistelPermutation {
  private readonly half: number;
  private readonly mask: number;
  private readonly keys: Uint32Array;

  constructor(readonly n: number, seed: number, rounds = 6) {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`FeistelPermutation: n must be a positive safe integer, got ${n}`);
    if (n > 2 ** 52) throw new RangeError(`FeistelPermutation: n must be at most 2^52, got ${n}`);
    let bits = 1;
    while (2 ** (2 * bits) < n) bits++;
    this.half = 2 ** bits;
    this.mask = bits >= 32 ? 0xffffffff : 2 ** bits - 1;
    this.keys = new Uint32Array(rounds);
    const base = deriveSeed(seed, 'feistel');
    for (let r = 0; r < rounds; r++) this.keys[r] = fmix32((base + Math.imul(r + 1, 0x9e3779b9)) >>> 0);
  }

  /** The image of x ∈ [0, n). */
  apply(x: number): number {
    if (!(x >= 0 && x < this.n) || !Number.isInteger(x)) throw new RangeError(`FeistelPermutation: ${x} is outside [0, ${this.n})`);
    do x = this.encrypt(x);
    while (x >= this.n);
    return x;
  }

  private encrypt(x: number): number {
    let left = Math.floor(x / this.half);
    let right = x - left * this.half;
    for (let r = 0; r < this.keys.length; r++) {
      const f = fmix32((right ^ this.keys[r]) >>> 0) & this.mask;
      const next = (left ^ f) >>> 0;
      left = right;
      right = next & this.mask;
    }
    return left * this.half + right;
  }
}
