import { InvalidArgumentError, Option } from 'commander';

/**
 * Shared commander option-value parsers. Each factory takes the option's flag (e.g. `'--seed'`)
 * and returns a `(value: string) => T` for `.option(flags, description, parser, default)`.
 * Invalid values throw commander's `InvalidArgumentError`, whose message names the option and
 * what it accepts; commander prefixes it with the offending value and exits with status 1.
 *
 * This module lives in src/cli and imports only commander, so stages/, pipelines/ and
 * evaluation/ commands may all use it.
 */

/** Inclusive bounds of a numeric option; an omitted bound is open. */
export interface OptionRange {
  min?: number;
  max?: number;
}

/** `[min, max]`, `≥ min`, `≤ max` or `''`: what the error messages say about a range. */
function describeRange(min: number, max: number): string {
  if (min > -Infinity && max < Infinity) return ` in [${min}, ${max}]`;
  if (min > -Infinity) return ` ≥ ${min}`;
  if (max < Infinity) return ` ≤ ${max}`;
  return '';
}

/**
 * An integer option in `[min, max]` (defaults: `min` 0, `max` unbounded, so plain
 * `integerOption('--seed')` accepts 0, 1, 2…). Parsed with `Number`, so `1e3` is 1000;
 * empty or blank values, fractions, NaN and ±Infinity are rejected.
 * Throws e.g. `--batch-size must be an integer ≥ 1` or `--threshold must be an integer in [0, 255]`.
 */
export function integerOption(name: string, { min = 0, max = Infinity }: OptionRange = {}): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer${describeRange(min, max)}`);
    }
    return n;
  };
}

/**
 * A finite number option in `[min, max]` (defaults: unbounded both ways). Parsed with `Number`;
 * empty or blank values, NaN and ±Infinity are rejected.
 * Throws e.g. `--epsilon must be a number in [0, 0.4999]`.
 */
export function numberOption(name: string, { min = -Infinity, max = Infinity }: OptionRange = {}): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a number${describeRange(min, max)}`);
    }
    return n;
  };
}

/** A number in [0, 1] (thresholds, IoUs, fractions): `numberOption(name, { min: 0, max: 1 })`. */
export function fractionOption(name: string): (v: string) => number {
  return numberOption(name, { min: 0, max: 1 });
}

/**
 * An image size written `WIDTHxHEIGHT` (decimal digits, both ≥ 1, lowercase `x`), e.g. `1024x1024`.
 * Throws `--size must be WIDTHxHEIGHT with positive integers, e.g. 1024x1024`.
 */
export function sizeOption(name: string): (v: string) => { width: number; height: number } {
  return (v: string) => {
    const m = /^(\d+)x(\d+)$/.exec(v);
    const width = m ? Number(m[1]) : 0;
    const height = m ? Number(m[2]) : 0;
    if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width <= 0 || height <= 0) {
      throw new InvalidArgumentError(`${name} must be WIDTHxHEIGHT with positive integers, e.g. 1024x1024`);
    }
    return { width, height };
  };
}

/** A repeatable string option: each occurrence is appended (use with default `[]`). */
export function collectValues(v: string, prev: string[]): string[] {
  return [...prev, v];
}

/** `--set key=value`, repeatable: a config override, parsed by `parseOverride` (values are YAML). */
export function setOption(
  help = 'override a config value, e.g. --set image.size=256 (repeatable; values are read as YAML; --set key=null unsets an optional key or section, ' +
    'e.g. --set aesthetic=null runs laion-filter download-only, and gives a defaulted key its default)',
): Option {
  return new Option('--set <key=value>', help).argParser(collectValues).default([]);
}

/** `-o, --output <url>`: where a job writes, instead of the config's `output`. */
export function outputOption(): Option {
  return new Option('-o, --output <url>', 'output directory or s3://bucket/prefix (overrides output)');
}

/** `--progress <mode>`: how a run shows its progress. */
export function progressOption(): Option {
  return new Option('--progress <mode>', 'progress display').choices(['auto', 'bar', 'plain', 'off']).default('auto');
}
