import { z } from 'zod';
import { COLORS } from './colors.js';

/** The six GenEval tasks, in the order of evaluation_metadata.jsonl; the overall score is their mean. */
export const TASKS = ['single_object', 'two_object', 'counting', 'colors', 'position', 'color_attr'] as const;

export const RELATIONS = ['left of', 'right of', 'above', 'below'] as const;
export type Relation = (typeof RELATIONS)[number];

// Clause keys are strict: a misspelt "colour" or "postion" would otherwise silently drop a check
// that the official evaluator would have made.
const includeClause = z.strictObject({
  class: z.string().min(1),
  count: z.number().int().min(1),
  color: z.enum(COLORS).optional(),
  position: z.tuple([z.enum(RELATIONS), z.number().int().min(0)]).optional(),
});
const excludeClause = z.strictObject({ class: z.string().min(1), count: z.number().int().min(1) });

/** One line of GenEval's evaluation_metadata.jsonl (also each prompt folder's metadata.jsonl). */
export const metadataSchema = z
  .looseObject({
    tag: z.string().min(1),
    prompt: z.string(),
    include: z.array(includeClause).optional(),
    exclude: z.array(excludeClause).optional(),
  })
  .superRefine((m, ctx) => {
    // Official code indexes the groups matched so far, so a target must be an earlier clause.
    (m.include ?? []).forEach((c, i) => {
      if (c.position && c.position[1] >= i) {
        ctx.addIssue({ code: 'custom', path: ['include', i, 'position', 1], message: `position target ${c.position[1]} must be an earlier include clause (index < ${i})` });
      }
    });
  });

export type GenevalMetadata = z.infer<typeof metadataSchema>;
export type IncludeClause = z.infer<typeof includeClause>;

/** A validated metadata line plus the object exactly as parsed, whose key order `metadata` strings keep. */
export interface ParsedMetadata {
  value: GenevalMetadata;
  raw: Record<string, unknown>;
}

/** Parses and validates one metadata line; errors name `where` (file and line). */
export function parseMetadata(text: string, where: string): ParsedMetadata {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: not JSON: ${(err as Error).message}`);
  }
  const r = metadataSchema.safeParse(raw);
  if (!r.success) {
    throw new Error(`${where}: not a GenEval metadata line: ${r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ')}`);
  }
  return { value: r.data, raw: raw as Record<string, unknown> };
}
