import type { Sample } from './sample.js';
import { toJson } from './json-safe.js';

/** Status columns that lead every record; metadata fields follow. */
export const STATUS_COLUMNS = ['key', 'status', 'dropped_by', 'dropped_value', 'failed_stage', 'error_code', 'error'] as const;

/**
 * A sample's row in the sidecar records: its status in fixed columns, then its metadata fields.
 * Dropped values are stored as JSON text so one column holds numbers, strings or lists alike.
 */
export function toRecord(s: Sample): Record<string, unknown> {
  const st = s.status;
  const rec: Record<string, unknown> = {
    key: s.key,
    status: st.kind,
    dropped_by: st.kind === 'dropped' ? st.by : null,
    dropped_value: st.kind === 'dropped' && st.value !== undefined ? toJson(st.value) : null,
    failed_stage: st.kind === 'failed' ? st.stage : null,
    error_code: st.kind === 'failed' ? (st.code ?? null) : null,
    error: st.kind === 'failed' ? st.error : null,
  };
  for (const [k, v] of Object.entries(s.fields)) if (!(k in rec)) rec[k] = v === undefined ? null : v;
  return rec;
}

/** A sample's WebDataset members: the encoded image, its fields as JSON, and the caption. */
export function webDatasetMembers(s: Sample): Record<string, Uint8Array | string> {
  if (!s.image || !s.imageExt) throw new Error(`sample ${s.key} has no encoded image to write`);
  const files: Record<string, Uint8Array | string> = { [s.imageExt]: s.image, json: toJson({ key: s.key, ...s.fields }) };
  if (typeof s.fields.caption === 'string') files.txt = s.fields.caption;
  return files;
}
