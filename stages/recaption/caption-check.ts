/** Bounds and patterns a caption must satisfy; one set for long captions, one for short. */
export interface CaptionRules {
  /** Words (whitespace-separated) at least … */
  min_words: number;
  /** … and at most. */
  max_words: number;
}

export interface CaptionCheckOptions {
  long: CaptionRules;
  short: CaptionRules;
  /**
   * Lead-ins that make a caption read like a chat answer ("The image shows …"). A caption that
   * still starts with one after clean-up is rejected (`boilerplate`): trained on, they teach
   * the model that every prompt starts that way.
   */
  boilerplate: string[];
  /** Remove a leading boilerplate phrase and capitalise what follows, instead of rejecting. */
  strip_boilerplate: boolean;
  /** Starts of answers that decline to caption (`refusal`). */
  refusals: string[];
  /**
   * Runaway repetition (`repetition`): below this share of distinct word trigrams, in captions
   * of at least 12 words. Sampling loops ("a cat and a cat and a cat …") score far below 0.5;
   * careful prose stays above 0.9.
   */
  min_distinct_trigrams: number;
}

export const DEFAULT_BOILERPLATE = [
  'the image shows',
  'this image shows',
  'the image depicts',
  'this image depicts',
  'the image features',
  'this image features',
  'the image displays',
  'the image is',
  'this image is',
  'in this image',
  'in the image',
  'the picture shows',
  'this picture shows',
  'the photo shows',
  'this photo shows',
  'here is',
  'sure',
  'certainly',
];

export const DEFAULT_REFUSALS = ["i'm sorry", 'i am sorry', 'sorry', "i can't", 'i cannot', 'i am unable', "i'm unable", 'as an ai', 'unable to'];

export const CAPTION_CHECK_DEFAULTS: CaptionCheckOptions = {
  long: { min_words: 15, max_words: 300 },
  short: { min_words: 3, max_words: 40 },
  boilerplate: DEFAULT_BOILERPLATE,
  strip_boilerplate: false,
  refusals: DEFAULT_REFUSALS,
  min_distinct_trigrams: 0.5,
};

/** Why a caption was refused; these become the funnel's `recaption:<reason>` lines when attempts run out. */
export type CaptionProblem = 'empty' | 'too_short' | 'too_long' | 'refusal' | 'boilerplate' | 'repetition';

export type CaptionVerdict = { ok: true; text: string } | { ok: false; problem: CaptionProblem; detail: string };

const norm = (s: string) => s.toLowerCase().replace(/[’`]/g, "'");

/** Whether `text` starts with `phrase` as whole words ("sure" matches "Sure," but not "Surely"). */
function startsWithPhrase(text: string, phrase: string): boolean {
  const t = norm(text);
  const p = norm(phrase);
  return t.startsWith(p) && (t.length === p.length || !/[\p{L}\p{N}]/u.test(t[p.length]));
}

/**
 * Whitespace collapsed to single spaces (captions are one line in training data), wrapping
 * quotes removed, and with `strip_boilerplate` a leading boilerplate phrase cut.
 */
export function cleanCaption(raw: string, opts: CaptionCheckOptions): string {
  let t = raw.replace(/\s+/g, ' ').trim();
  const quoted = /^(["'“‘])(.*)(["'”’])$/.exec(t);
  if (quoted && quoted[2].length > 0 && !/["“”]/.test(quoted[2])) t = quoted[2].trim();
  if (opts.strip_boilerplate) {
    for (const b of opts.boilerplate) {
      if (!startsWithPhrase(t, b)) continue;
      const rest = t.slice(b.length).replace(/^[\s,:;.!-]+/, '');
      // "The image is …" stripped to "… " would often leave a fragment; only strip into a phrase.
      if (rest.split(' ').length >= 2) t = rest.charAt(0).toUpperCase() + rest.slice(1);
      break;
    }
  }
  return t;
}

const words = (t: string) => t.split(' ').filter((w) => /[\p{L}\p{N}]/u.test(w));

/** Share of distinct word trigrams, lower-cased with punctuation removed (1 for short texts). */
export function distinctTrigramShare(text: string): number {
  const w = words(text).map((x) => x.toLowerCase().replace(/[^\p{L}\p{N}]/gu, ''));
  if (w.length < 12) return 1;
  const grams = new Set<string>();
  for (let i = 0; i + 2 < w.length; i++) grams.add(`${w[i]} ${w[i + 1]} ${w[i + 2]}`);
  return grams.size / (w.length - 2);
}

/** Cleans a caption and checks it against the rules of its kind. */
export function checkCaption(raw: string, kind: 'long' | 'short', opts: CaptionCheckOptions): CaptionVerdict {
  const text = cleanCaption(raw, opts);
  if (text === '') return { ok: false, problem: 'empty', detail: `${kind} caption is empty` };
  const refusal = opts.refusals.find((r) => startsWithPhrase(text, r));
  if (refusal) return { ok: false, problem: 'refusal', detail: `${kind} caption is a refusal: ${excerpt(text)}` };
  const lead = opts.boilerplate.find((b) => startsWithPhrase(text, b));
  if (lead) return { ok: false, problem: 'boilerplate', detail: `${kind} caption starts with "${lead}": ${excerpt(text)}` };
  const n = words(text).length;
  const rules = opts[kind];
  if (n < rules.min_words) return { ok: false, problem: 'too_short', detail: `${kind} caption has ${n} words, fewer than ${rules.min_words}: ${excerpt(text)}` };
  if (n > rules.max_words) return { ok: false, problem: 'too_long', detail: `${kind} caption has ${n} words, more than ${rules.max_words}` };
  const share = distinctTrigramShare(text);
  if (share < opts.min_distinct_trigrams) return { ok: false, problem: 'repetition', detail: `${kind} caption repeats itself (distinct trigrams ${share.toFixed(2)} < ${opts.min_distinct_trigrams}): ${excerpt(text)}` };
  return { ok: true, text };
}

function excerpt(t: string): string {
  return JSON.stringify(t.length > 80 ? `${t.slice(0, 80)}…` : t);
}
