import cliProgress from 'cli-progress';

/** Progress of a run: a live bar on a terminal, a plain line every few seconds otherwise. */
export interface Progress {
  rows(n: number): void;
  unitDone(): void;
  stop(): void;
}

export interface ProgressOptions {
  label: string;
  units: number;
  /** 'auto' draws a bar when stderr is a terminal. */
  mode: 'auto' | 'bar' | 'plain' | 'off';
  /** Seconds between plain lines. */
  intervalSeconds?: number;
  stream?: NodeJS.WriteStream;
}

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const mode = opts.mode === 'auto' ? (stream.isTTY ? 'bar' : 'plain') : opts.mode;
  if (mode === 'off') return { rows() {}, unitDone() {}, stop() {} };
  let rows = 0;
  let units = 0;
  const t0 = Date.now();
  const rate = () => rows / Math.max(1e-3, (Date.now() - t0) / 1000);
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${opts.label} [{bar}] {value}/{total} units | {rows} rows | {rate} rows/s | {duration_formatted}`,
      noTTYOutput: mode === 'plain',
      notTTYSchedule: (opts.intervalSeconds ?? 10) * 1000,
      etaBuffer: 50,
      hideCursor: mode === 'bar',
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(opts.units, 0, { rows: 0, rate: '0' });
  const refresh = () => bar.update(units, { rows, rate: rate().toFixed(1) });
  return {
    rows(n) {
      rows += n;
      refresh();
    },
    unitDone() {
      units++;
      refresh();
    },
    stop() {
      refresh();
      bar.stop();
    },
  };
}
