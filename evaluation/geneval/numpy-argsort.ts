/**
 * The permutation `np.argsort(values)` gives with numpy's default kind ("quicksort") on float
 * arrays, reproduced exactly: numpy's generic introsort (median-of-three quicksort, insertion sort
 * on partitions of at most 16, heapsort past the depth limit; NaNs last). GenEval orders detections
 * with `np.argsort(scores)[::-1]`, so which of two equal scores comes first is this algorithm's
 * doing: short arrays (≤ 16) come out stable, so reversed the later equal score leads; longer ones
 * depend on the partitioning. This is the code path of numpy 1.23 (the official environment) and of
 * later numpy on CPUs without its AVX-512 sorting kernels.
 */
export function numpyArgsort(values: readonly number[]): number[] {
  const v = values;
  const less = (a: number, b: number) => a < b || (b !== b && a === a);
  const tosort = values.map((_, i) => i);
  const swap = (i: number, j: number) => {
    const t = tosort[i];
    tosort[i] = tosort[j];
    tosort[j] = t;
  };
  const SMALL_QUICKSORT = 15;
  const stack: number[] = [];
  const depthStack: number[] = [];
  let pl = 0;
  let pr = values.length - 1;
  let cdepth = values.length > 0 ? Math.floor(Math.log2(values.length)) * 2 : 0;
  for (;;) {
    if (cdepth < 0) {
      heapsortRange(v, tosort, pl, pr - pl + 1, less);
    } else {
      while (pr - pl > SMALL_QUICKSORT) {
        const pm = pl + ((pr - pl) >> 1);
        if (less(v[tosort[pm]], v[tosort[pl]])) swap(pm, pl);
        if (less(v[tosort[pr]], v[tosort[pm]])) swap(pr, pm);
        if (less(v[tosort[pm]], v[tosort[pl]])) swap(pm, pl);
        const vp = v[tosort[pm]];
        let pi = pl;
        let pj = pr - 1;
        swap(pm, pj);
        for (;;) {
          do ++pi;
          while (less(v[tosort[pi]], vp));
          do --pj;
          while (less(vp, v[tosort[pj]]));
          if (pi >= pj) break;
          swap(pi, pj);
        }
        swap(pi, pr - 1);
        // The larger partition waits on the stack; the smaller is sorted next.
        if (pi - pl < pr - pi) {
          stack.push(pi + 1, pr);
          pr = pi - 1;
        } else {
          stack.push(pl, pi - 1);
          pl = pi + 1;
        }
        depthStack.push(--cdepth);
      }
      for (let pi = pl + 1; pi <= pr; ++pi) {
        const vi = tosort[pi];
        const vp = v[vi];
        let pj = pi;
        let pk = pi - 1;
        while (pj > pl && less(vp, v[tosort[pk]])) tosort[pj--] = tosort[pk--];
        tosort[pj] = vi;
      }
    }
    if (stack.length === 0) break;
    pr = stack.pop()!;
    pl = stack.pop()!;
    cdepth = depthStack.pop()!;
  }
  return tosort;
}

/** numpy's aheapsort on tosort[start, start + n): 1-based sift-down heap, as in npysort/heapsort. */
function heapsortRange(v: readonly number[], tosort: number[], start: number, n: number, less: (a: number, b: number) => boolean): void {
  // a[1..n] aliases tosort[start..start+n-1].
  const get = (k: number) => tosort[start + k - 1];
  const set = (k: number, x: number) => {
    tosort[start + k - 1] = x;
  };
  let i: number;
  let j: number;
  let l: number;
  let tmp: number;
  for (l = n >> 1; l > 0; --l) {
    tmp = get(l);
    for (i = l, j = l << 1; j <= n; ) {
      if (j < n && less(v[get(j)], v[get(j + 1)])) j += 1;
      if (less(v[tmp], v[get(j)])) {
        set(i, get(j));
        i = j;
        j += j;
      } else break;
    }
    set(i, tmp);
  }
  for (; n > 1; ) {
    tmp = get(n);
    set(n, get(1));
    n -= 1;
    for (i = 1, j = 2; j <= n; ) {
      if (j < n && less(v[get(j)], v[get(j + 1)])) j++;
      if (less(v[tmp], v[get(j)])) {
        set(i, get(j));
        i = j;
        j += j;
      } else break;
    }
    set(i, tmp);
  }
}
