import type { Unit } from '../units/unit.js';

/**
 * Extend mode (`bitprep run --extend`): an output started on some inputs takes more. The new
 * plan's units that the output already has (the same input, rows and bytes) keep their ids, so
 * their outputs and done markers stay as they are; units of the new inputs get the ids after the
 * last existing one, at the existing ids' width, so their keys (unit id + row offset) never
 * collide with existing keys. A plan that drops or changes an existing unit is refused.
 */
export function extendUnits(previous: readonly Unit[], planned: readonly Unit[], output: string): Unit[] {
  const identity = (u: Unit): string => JSON.stringify(u.inputs);
  const byInputs = new Map(planned.map((u) => [identity(u), u]));
  const missing = previous.filter((u) => !byInputs.has(identity(u)));
  if (missing.length > 0) {
    const first = missing[0].inputs.map((i) => i.uri).join(', ');
    throw new Error(
      `--extend: ${missing.length} unit(s) of ${output} are not in the new plan (e.g. ${missing[0].id}: ${first}); extend mode only adds inputs. ` +
        'Keep every input the output was made from (and the unit size), or write to a new output.',
    );
  }
  const known = new Set(previous.map(identity));
  const added = planned.filter((u) => !known.has(identity(u)));
  const width = Math.max(...previous.map((u) => u.id.length), 5);
  if (previous.length + added.length > 10 ** width) {
    throw new Error(`--extend: ${previous.length + added.length} units do not fit the output's ${width}-digit unit ids; write to a new output`);
  }
  return [...previous, ...added.map((u, j) => ({ ...u, id: String(previous.length + j).padStart(width, '0') }))];
}
