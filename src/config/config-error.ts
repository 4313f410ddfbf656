/** A problem with a config or its inputs, found before any work: printed without a stack, exit 2. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
