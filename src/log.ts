/** Where runtime messages go; a progress bar may redirect them so they do not tear the bar. */
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  /** The same logger with `fields` on its structured records (log-file.ts); plain loggers have none. */
  with?(fields: LogFields): Logger;
}

/** What a structured log record says of where a message comes from. */
export interface LogFields {
  job?: string;
  unit?: string;
  stage?: string;
}

/** `log` with `fields` on its structured records, or `log` itself when it keeps none. */
export const withFields = (log: Logger, fields: LogFields): Logger => log.with?.(fields) ?? log;

export const consoleLogger: Logger = {
  info: (m) => process.stderr.write(`${m}\n`),
  warn: (m) => process.stderr.write(`warning: ${m}\n`),
  error: (m) => process.stderr.write(`error: ${m}\n`),
};

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
