/**
 * What a finished `bitprep dedup` folder holds (dedup-run.ts writes it, dedup-view.ts reads it):
 * `summary.json` (written last), `drops/part-*.parquet`, and `view/<i>/<unit>.parquet` per output.
 */
export interface DedupSummary {
  format: 'bitprep-dedup';
  version: 1;
  outputs: string[];
  methods: { sha256: true; phash: number | null; embeddings: { threshold: number; clusters: number; dim: number; source: string } | null };
  /** Ok rows, per output and in all. */
  rows: number[];
  total_rows: number;
  /** Rows dropped as exact copies (same bytes), per output and in all. */
  duplicates: number[];
  total_duplicates: number;
  /** Rows dropped as near copies (and not exact ones), per output and in all. */
  near_duplicates: number[];
  total_near_duplicates: number;
  /** Ok rows without a digest (the exact pass cannot compare them), per output. */
  no_digest: number[];
  partitions: number;
  /** The view folder of each output, in order. */
  views: string[];
}

export const DEDUP_SUMMARY = 'summary.json';
export const viewFolder = (output: number): string => `view/${output}/`;
