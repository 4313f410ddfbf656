/** How a dedup pass found a row to be a later copy. */
export type DedupMethod = 'sha256' | 'phash' | 'embeddings';

/**
 * One row a pass drops, with the earlier row it repeats. Rows are dedup ordinals
 * (dedup-units.ts); `distance` is bits for phash, 1 − cosine for embeddings, 0 for sha256.
 */
export interface DedupDrop {
  row: number;
  key: string;
  method: DedupMethod;
  kept: number;
  keptKey: string;
  distance: number;
  /** sha256: the shared digest. */
  digest?: string;
}

export type EmitDrop = (d: DedupDrop) => Promise<void>;

/** When several passes drop one row, the drop lists name the surest: identical bytes, then hash, then embedding. */
export const METHOD_RANK: Record<DedupMethod, number> = { sha256: 0, phash: 1, embeddings: 2 };
