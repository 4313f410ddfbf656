import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { z } from 'zod';
// tesseract.js loads with the first worker (the OCR stage of a run), not with the CLI.
import type { Worker } from 'tesseract.js';
import { parseStageOptions } from '../stage-options.js';
import type { TextBox } from './text-boxes.js';

const require = createRequire(import.meta.url);

/**
 * The English model shipped inside the installed @tesseract.js-data/eng package (LSTM, integer
 * weights). tesseract.js downloads a model when it has no langPath; pointing it here keeps every
 * run offline.
 */
export function bundledLangPath(): string {
  return join(dirname(require.resolve('@tesseract.js-data/eng/package.json')), '4.0.0_best_int');
}

export const tesseractPoolOptions = z.object({
  /** tesseract.js workers, each a WebAssembly tesseract on its own thread (default one per core). */
  workers: z.number().int().min(1).default(availableParallelism()),
  /** Folder holding eng.traineddata.gz (default the bundled one, bundledLangPath()). */
  langPath: z.string().optional(),
}).strict();

export type TesseractPoolOptions = z.input<typeof tesseractPoolOptions>;

export interface RecognizeOptions {
  /** Tesseract page segmentation mode: 11 sparse text, 6 one block, 7 one line, 3 automatic. */
  psm: number;
  /** Only this part of the image is read. */
  rectangle?: { left: number; top: number; width: number; height: number };
}

/** A word as tesseract reports it, confidence 0..1. */
export type RecognizedWord = TextBox & { text: string };

interface Block { paragraphs?: { lines?: { words?: { text: string; confidence: number; bbox: { x0: number; y0: number; x1: number; y1: number } }[] }[] }[] }

/**
 * A fixed set of tesseract.js workers fed from one queue. Each call takes an idle worker, so a
 * stage can keep `size` images in flight and no more.
 */
export class TesseractPool {
  readonly size: number;
  private readonly langPath: string;
  private readonly psmOf = new WeakMap<Worker, number>();
  private readonly idle: Worker[] = [];
  private readonly waiting: ((w: Worker) => void)[] = [];
  private readonly all: Promise<Worker>[] = [];
  private closed = false;

  constructor(opts: TesseractPoolOptions = {}) {
    const o = parseStageOptions('tesseract pool', tesseractPoolOptions, opts);
    this.size = o.workers;
    this.langPath = o.langPath ?? bundledLangPath();
  }

  private async start(): Promise<Worker> {
    const { createWorker, OEM } = await import('tesseract.js');
    const w = await createWorker('eng', OEM.LSTM_ONLY, {
      langPath: this.langPath,
      gzip: true,
      cacheMethod: 'none',
      logger: () => {},
      errorHandler: () => {},
    });
    // Tesseract's diagnostics ("Estimating resolution as …") would go to the process's stdout.
    await w.setParameters({ debug_file: '/dev/null' } as never);
    return w;
  }

  private async acquire(): Promise<Worker> {
    if (this.closed) throw new Error('tesseract pool is closed');
    const w = this.idle.pop();
    if (w) return w;
    if (this.all.length < this.size) {
      const p = this.start();
      this.all.push(p);
      return p;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(w: Worker): void {
    const next = this.waiting.shift();
    if (next) next(w);
    else this.idle.push(w);
  }

  /** Words of an encoded image (PNG, JPEG, BMP, PNM…), in its pixel coordinates. */
  async recognize(image: Uint8Array, opts: RecognizeOptions): Promise<RecognizedWord[]> {
    const w = await this.acquire();
    try {
      if (this.psmOf.get(w) !== opts.psm) {
        await w.setParameters({ tessedit_pageseg_mode: String(opts.psm) as never });
        this.psmOf.set(w, opts.psm);
      }
      const r = await w.recognize(Buffer.from(image.buffer, image.byteOffset, image.byteLength), opts.rectangle ? { rectangle: opts.rectangle } : {}, { blocks: true, text: false });
      const blocks = (r.data.blocks ?? []) as Block[];
      const words: RecognizedWord[] = [];
      for (const b of blocks) for (const p of b.paragraphs ?? []) for (const l of p.lines ?? []) for (const x of l.words ?? []) {
        words.push({ x0: x.bbox.x0, y0: x.bbox.y0, x1: x.bbox.x1, y1: x.bbox.y1, confidence: x.confidence / 100, text: x.text });
      }
      return words;
    } finally {
      this.release(w);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = await Promise.allSettled(this.all);
    await Promise.all(workers.map((w) => (w.status === 'fulfilled' ? w.value.terminate().catch(() => {}) : undefined)));
  }
}
