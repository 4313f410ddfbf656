const SHARD_BITS = 8;
const SHARDS = 1 << SHARD_BITS;
const INITIAL_SLOTS = 1024;

/**
 * A set of 64-bit fingerprints (two uint32 halves) for the training mix's dedup: the only state
 * that grows with every input row, so it holds nothing but the fingerprints themselves.
 *
 * Memory: 8 bytes per slot, kept between 37.5% and 75% full: 11–21 bytes per distinct row (6–13 GB
 * for 600M). 256 open-addressing tables (chosen by the top 8 bits of `hi`, probed by `lo`) keep each
 * typed array far below Node 20's 4 GiB per array and make a growth copy 1/256 of the whole.
 *
 * Collisions: two different rows sharing 64 bits read as duplicates; the chance of any such pair
 * among n rows is about n² / 2^65 (1% at 600M rows, meaning one row wrongly dropped). Accepted: the
 * alternative (keeping the identity strings) costs ten times the memory.
 */
export class FingerprintSet {
  /** Per shard: slots as interleaved (hi, lo) pairs; (0, 0) marks an empty slot. */
  private readonly tables: Uint32Array[] = [];
  private readonly counts = new Uint32Array(SHARDS);
  private total = 0;

  constructor() {
    for (let s = 0; s < SHARDS; s++) this.tables.push(new Uint32Array(2 * INITIAL_SLOTS));
  }

  get size(): number {
    return this.total;
  }

  /** Bytes held by the tables. */
  get byteLength(): number {
    return this.tables.reduce((a, t) => a + t.byteLength, 0);
  }

  /** Adds the fingerprint; true when it was not in the set yet. */
  add(hi: number, lo: number): boolean {
    hi >>>= 0;
    lo >>>= 0;
    // (0, 0) is the empty marker; folding it onto (0, 1) costs one more chance collision in 2^64.
    if (hi === 0 && lo === 0) lo = 1;
    const s = hi >>> (32 - SHARD_BITS);
    let t = this.tables[s];
    const slots = t.length >>> 1;
    let i = lo & (slots - 1);
    for (;;) {
      const a = t[2 * i];
      const b = t[2 * i + 1];
      if (a === 0 && b === 0) break;
      if (a === hi && b === lo) return false;
      i = (i + 1) & (slots - 1);
    }
    t[2 * i] = hi;
    t[2 * i + 1] = lo;
    this.total++;
    if (++this.counts[s] * 4 > slots * 3) {
      t = this.grow(t);
      this.tables[s] = t;
    }
    return true;
  }

  private grow(old: Uint32Array): Uint32Array {
    const slots = old.length; // doubled: old.length / 2 slots → old.length slots
    const t = new Uint32Array(2 * slots);
    for (let j = 0; j < old.length; j += 2) {
      const hi = old[j];
      const lo = old[j + 1];
      if (hi === 0 && lo === 0) continue;
      let i = lo & (slots - 1);
      while (t[2 * i] !== 0 || t[2 * i + 1] !== 0) i = (i + 1) & (slots - 1);
      t[2 * i] = hi;
      t[2 * i + 1] = lo;
    }
    return t;
  }
}
