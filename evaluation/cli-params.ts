import { InvalidArgumentError } from 'commander';

/**
 * Parses one `--param key=value`: the value as JSON when it parses (`4.5`, `true`, `"x"`, `[1,2]`,
 * `null`), else as the plain string (`sampler=dpm`), so sampler settings keep their types on the wire.
 */
export function parseParam(arg: string): [string, unknown] {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw new Error(`--param ${arg}: expected key=value`);
  const text = arg.slice(eq + 1);
  let value: unknown = text;
  try {
    value = JSON.parse(text);
  } catch {
    // Not JSON: the plain string is meant.
  }
  return [arg.slice(0, eq), value];
}

/**
 * Commander reducer for a repeatable `--param key=value`. Keys must be names (they become request
 * fields and `{key}` template placeholders); a key given twice is refused rather than silently
 * overwritten, since a run records its settings.
 */
export function collectParams(v: string, prev: Record<string, unknown>): Record<string, unknown> {
  let key: string;
  let value: unknown;
  try {
    [key, value] = parseParam(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new InvalidArgumentError(`--param must be key=value with key a name (letters, digits, _), got ${JSON.stringify(v)}`);
  if (key in prev) throw new InvalidArgumentError(`--param ${key} given twice`);
  return { ...prev, [key]: value };
}
