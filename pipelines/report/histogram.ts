/**
 * A histogram with bins fixed up front, split into kept rows and the rest, so one pass over any
 * number of records holds a few hundred numbers. Values below `lo` or at/above `hi` land in the
 * first or last bin (the chart says so), NaN and non-numbers are skipped.
 */
export class FixedHistogram {
  readonly kept: number[];
  readonly other: number[];
  count = 0;
  min = Infinity;
  max = -Infinity;
  sum = 0;
  clipped = 0;

  constructor(readonly lo: number, readonly hi: number, readonly bins: number) {
    if (!(hi > lo) || !(Number.isInteger(bins) && bins > 0)) throw new Error(`histogram: need lo < hi and a positive bin count, got [${lo}, ${hi}) in ${bins}`);
    this.kept = new Array<number>(bins).fill(0);
    this.other = new Array<number>(bins).fill(0);
  }

  get binWidth(): number {
    return (this.hi - this.lo) / this.bins;
  }

  add(value: number, kept: boolean): void {
    if (!Number.isFinite(value)) return;
    let i = Math.floor((value - this.lo) / this.binWidth);
    if (i < 0 || i >= this.bins) {
      this.clipped++;
      i = i < 0 ? 0 : this.bins - 1;
    }
    (kept ? this.kept : this.other)[i]++;
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }

  get mean(): number {
    return this.count ? this.sum / this.count : NaN;
  }

  /** Indices of the first and last non-empty bins (the chart draws only that span), or null when empty. */
  span(): [number, number] | null {
    let a = -1;
    let b = -1;
    for (let i = 0; i < this.bins; i++) {
      if (this.kept[i] + this.other[i] > 0) {
        if (a < 0) a = i;
        b = i;
      }
    }
    return a < 0 ? null : [a, b];
  }
}
