import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LogFields, Logger } from './log.js';

/**
 * `--log-file`: every message also goes to a file as JSON lines — `{"time", "level", "job",
 * "unit", "stage", "message"}` (unit and stage where the message comes from one) — for a
 * cluster's log shipper. Appended synchronously, so a killed process loses no line it logged.
 */
export function jsonLinesLogger(path: string, base: Logger, fields: LogFields = {}): Logger {
  mkdirSync(dirname(path), { recursive: true });
  return fileLogger(path, base, fields);
}

function fileLogger(path: string, base: Logger, fields: LogFields): Logger {
  const write = (level: 'info' | 'warn' | 'error', message: string) => {
    appendFileSync(path, JSON.stringify({ time: new Date().toISOString(), level, ...fields, message }) + '\n');
  };
  return {
    info: (m) => {
      base.info(m);
      write('info', m);
    },
    warn: (m) => {
      base.warn(m);
      write('warn', m);
    },
    error: (m) => {
      base.error(m);
      write('error', m);
    },
    with: (more) => fileLogger(path, base, { ...fields, ...more }),
  };
}
