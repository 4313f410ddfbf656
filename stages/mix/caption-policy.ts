import { unitDraw } from './hash.js';

/** Which caption a sample trains on: `caption` and `none` are the fallbacks; `uncond`, the empty prompt of caption dropout. */
export type CaptionKind = 'long' | 'short' | 'caption' | 'none' | 'uncond';

export const CAPTION_KINDS: readonly CaptionKind[] = ['long', 'short', 'caption', 'none', 'uncond'];

const COLUMN: Record<'long' | 'short' | 'caption', string> = { long: 'caption_long', short: 'caption_short', caption: 'caption' };

const usable = (v: unknown): v is string => typeof v === 'string' && v.trim().length > 0;

/**
 * The caption of one sample: `long` when draw < longRatio, else `short`; if that caption is
 * missing or blank, the other one, then the original `caption`; `none` (text null) when the row
 * has none of them. The draw is a seeded hash of the sample (see captionDraw), so the choice does
 * not depend on the order rows are read in.
 */
export function chooseCaption(fields: Record<string, unknown>, draw: number, longRatio: number): { kind: CaptionKind; text: string | null } {
  const want = draw < longRatio ? 'long' : 'short';
  const order = want === 'long' ? (['long', 'short', 'caption'] as const) : (['short', 'long', 'caption'] as const);
  for (const kind of order) {
    const v = fields[COLUMN[kind]];
    if (usable(v)) return { kind, text: v };
  }
  return { kind: 'none', text: null };
}

/**
 * The draw behind a sample's caption choice: a hash of (seed, copy, identity). The copy number
 * (0 for a sample's first appearance, 1 for its second pass…) gives a repeated sample a fresh
 * draw, so a set used twice is seen with its other caption about half the time.
 */
export function captionDraw(identity: string, copy: number, seed: number): number {
  return unitDraw(`${copy}\u0000${identity}`, seed);
}

/**
 * Caption dropout for classifier-free guidance, as the reference training does it (a caption
 * replaced by the empty prompt with probability uncond_prob, 0.1 there): the empty string with
 * kind `uncond` when `draw` < `prob`, else the chosen caption. The draw is its own seeded hash of
 * the sample and copy (uncondDraw), independent of the long/short draw.
 */
export function dropCaption(caption: { kind: CaptionKind; text: string | null }, draw: number, prob: number): { kind: CaptionKind; text: string | null } {
  return draw < prob ? { kind: 'uncond', text: '' } : caption;
}

/** The draw behind a sample's caption dropout: a hash of (seed, 'uncond', copy, identity). */
export function uncondDraw(identity: string, copy: number, seed: number): number {
  return unitDraw(`uncond\u0000${copy}\u0000${identity}`, seed);
}
