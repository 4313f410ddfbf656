const FREE = 0xffffffff;

/**
 * A set of 96-bit digests (three uint32 words), each mapped to the uint32 value it was first
 * added with. Typed arrays and an open-addressing table (linear probing, load ≤ 0.5): about 16
 * bytes per digest plus 4–16 bytes of table, no per-entry JS objects, so no GC pressure and no
 * Map's 2^24-entry ceiling. Growth doubles an array, so a resize briefly holds both copies.
 * Digests must be uniformly distributed (cryptographic hashes): their own bits index the table.
 *
 * Collisions: two different inputs sharing 96 bits read as the same digest. The chance of any
 * such pair among n digests is about n² / 2^97: 6e-18 for a million, 2e-10 for five billion.
 */
export class DigestTable {
  private d0 = new Uint32Array(1024);
  private d1 = new Uint32Array(1024);
  private d2 = new Uint32Array(1024);
  private value = new Uint32Array(1024);
  private slots = new Uint32Array(2048).fill(FREE);
  private n = 0;

  /** Digests held. */
  get size(): number {
    return this.n;
  }

  /** Bytes held by the table's arrays. */
  get byteLength(): number {
    return this.d0.byteLength * 4 + this.slots.byteLength;
  }

  /** The value this digest was first added with, or undefined after adding it with `value`. */
  firstOrAdd(a: number, b: number, c: number, value: number): number | undefined {
    const slot = this.find(a, b, c);
    const at = this.slots[slot];
    if (at !== FREE) return this.value[at];
    if (this.n === this.d0.length) this.grow();
    this.d0[this.n] = a;
    this.d1[this.n] = b;
    this.d2[this.n] = c;
    this.value[this.n] = value;
    this.slots[slot] = this.n++;
    if (this.n * 2 > this.slots.length) this.rehash(this.slots.length * 2);
    return undefined;
  }

  get(a: number, b: number, c: number): number | undefined {
    const at = this.slots[this.find(a, b, c)];
    return at === FREE ? undefined : this.value[at];
  }

  /** The slot holding this digest, or the free slot where it would go. */
  private find(a: number, b: number, c: number): number {
    const mask = this.slots.length - 1;
    let slot = a & mask;
    for (;;) {
      const at = this.slots[slot];
      if (at === FREE || (this.d0[at] === a && this.d1[at] === b && this.d2[at] === c)) return slot;
      slot = (slot + 1) & mask;
    }
  }

  private grow(): void {
    const up = (x: Uint32Array) => {
      const y = new Uint32Array(x.length * 2);
      y.set(x);
      return y;
    };
    this.d0 = up(this.d0);
    this.d1 = up(this.d1);
    this.d2 = up(this.d2);
    this.value = up(this.value);
  }

  private rehash(size: number): void {
    this.slots = new Uint32Array(size).fill(FREE);
    const mask = size - 1;
    for (let i = 0; i < this.n; i++) {
      let slot = this.d0[i] & mask;
      while (this.slots[slot] !== FREE) slot = (slot + 1) & mask;
      this.slots[slot] = i;
    }
  }
}
