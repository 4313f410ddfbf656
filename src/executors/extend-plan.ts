import type { Unit } from '../units/unit.js';

/** A unit's identity across plans: what it reads (input, rows, byte offset), not its id. */
const identity = (u: Unit): string => JSON.stringify(u.inputs);

/** The recorded units the new plan lacks, and the planned units the record lacks. */
function compareUnits(previous: readonly Unit[], planned: readonly Unit[]): { missing: Unit[]; added: Unit[] } {
  const plannedIds = new Set(planned.map(identity));
  const known = new Set(previous.map(identity));
  return { missing: previous.filter((u) => !plannedIds.has(identity(u))), added: planned.filter((u) => !known.has(identity(u))) };
}

/** Whether a new plan holds exactly the recorded units (in whatever order the planner gave them). */
export function sameUnits(previous: readonly Unit[], planned: readonly Unit[]): boolean {
  const { missing, added } = compareUnits(previous, planned);
  return missing.length === 0 && added.length === 0;
}

/**
 * Extend mode (`bitprep run --extend`): an output started on some inputs takes more. The new
 * plan's units that the output already has (the same input, rows and bytes) keep their ids, so
 * their outputs and done markers stay as they are; units of the new inputs get the ids after the
 * last existing one, at the existing ids' width, so their keys (unit id + row offset) never
 * collide with existing keys. A plan that drops or changes an existing unit is refused.
 */
export function extendUnits(previous: readonly Unit[], planned: readonly Unit[], output: string): Unit[] {
  const { missing, added } = compareUnits(previous, planned);
  if (missing.length > 0) {
    const first = missing[0].inputs.map((i) => i.uri).join(', ');
    throw new Error(
      `--extend: ${missing.length} unit(s) of ${output} are not in the new plan (e.g. ${missing[0].id}: ${first}); extend mode only adds inputs. ` +
        'Keep every input the output was made from (and the unit size), or write to a new output.',
    );
  }
  const width = Math.max(...previous.map((u) => u.id.length), 5);
  if (previous.length + added.length > 10 ** width) {
    throw new Error(`--extend: ${previous.length + added.length} units do not fit the output's ${width}-digit unit ids; write to a new output`);
  }
  return [...previous, ...added.map((u, j) => ({ ...u, id: String(previous.length + j).padStart(width, '0') }))];
}
