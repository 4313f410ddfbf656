import { consoleLogger } from '../log.js';
import { EXIT } from './exit-codes.js';

/**
 * SIGINT/SIGTERM as a graceful stop: the first one stops the command's work (`signal` aborts,
 * `stop` resolves) and lets it end cleanly with a summary; a second one exits at once.
 */
export function stopOnSignals(what: string): { signal: AbortSignal; stop: Promise<'graceful'>; dispose(): void } {
  const controller = new AbortController();
  let resolveStop!: (how: 'graceful') => void;
  const stop = new Promise<'graceful'>((r) => (resolveStop = r));
  let count = 0;
  const onSignal = (s: NodeJS.Signals) => {
    count++;
    if (count > 1) {
      consoleLogger.error(`${s} again: exiting now; unfinished units stay undone`);
      process.exit(EXIT.INTERRUPTED);
    }
    consoleLogger.info(`${s}: ${what}; send again to exit now`);
    controller.abort(new Error(`interrupted by ${s}`));
    resolveStop('graceful');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    stop,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
