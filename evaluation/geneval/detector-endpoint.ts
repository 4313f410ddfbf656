/**
 * A GenEval detector behind HTTP, e.g. a small server wrapping mmdet's Mask2Former as the
 * official evaluator runs it.
 */
import { readFile } from 'node:fs/promises';
import { ModelResponseError, OpenAIEndpoint } from '../../src/models/openai-endpoint.js';
import type { RetryOptions } from '../../src/retry.js';
import { detectionsLineSchema } from './detections.js';
import { DEFAULT_MIN_SCORE, finishDetections, GENEVAL_OBJECT_NAMES, type ClassDetections, type Detector, type DetectorImage, type RawDetection } from './detector.js';

export interface EndpointDetectorOptions {
  /** The full URL the images are POSTed to, e.g. `http://gpu-box:8080/detect`. */
  url: string;
  /** HTTP requests in flight at once (default 8). */
  concurrency?: number;
  /** Per attempt, until the whole answer is in (default 120 s). */
  timeoutMs?: number;
  retry?: RetryOptions;
  /** Class names the endpoint may answer with (default GENEVAL_OBJECT_NAMES). */
  objectNames?: readonly string[];
  /** Keep detections with score above this (default 0.3). */
  minScore?: number;
}

const answerSchema = detectionsLineSchema.omit({ image: true });

/**
 * The HTTP endpoint contract:
 *
 *   POST <url>   content-type: application/json
 *   {"image": "<base64 of the image file's bytes, PNG as generated>", "filename": "00012/samples/0003.png"}
 *
 *   200 application/json, the detections line of that image without its `image` key:
 *   {"detections": {"dog": [[x1, y1, x2, y2, score], …],
 *                   "car": [{"box": [x1, y1, x2, y2], "score": s, "mask"?: {"size": [h, w], "counts": RLE},
 *                            "color"?: one of GenEval's ten colors}]}}
 *
 * Boxes are in pixels of the image as sent; class names are GenEval's object names; masks are COCO
 * RLE (pycocotools' string or a plain run list). Any order: bitprep drops detections with
 * score ≤ the minimum and orders the rest itself. 429, 5xx, connection resets and timeouts are
 * retried with backoff (the house retry policy); other statuses and answers that break the shape
 * fail, naming the image.
 */
export class EndpointDetector implements Detector {
  readonly name: string;
  private readonly endpoint: OpenAIEndpoint;
  private readonly objectNames: readonly string[];
  private readonly minScore: number;

  constructor(opts: EndpointDetectorOptions) {
    this.name = opts.url;
    this.objectNames = opts.objectNames ?? GENEVAL_OBJECT_NAMES;
    this.minScore = opts.minScore ?? DEFAULT_MIN_SCORE;
    this.endpoint = new OpenAIEndpoint(
      { baseUrl: opts.url, model: 'detector', maxInFlight: opts.concurrency ?? 8, timeoutMs: opts.timeoutMs, retry: opts.retry },
      (code, message, status, cause) => new ModelResponseError(code, message, status, { cause }),
    );
  }

  /** Request counts, retries and failures so far. */
  get stats() {
    return this.endpoint.stats;
  }

  async detect(img: DetectorImage, signal?: AbortSignal): Promise<ClassDetections> {
    let bytes: Buffer;
    try {
      bytes = await readFile(img.path);
    } catch (err) {
      throw new Error(`${img.path}: cannot read image: ${(err as Error).message}`);
    }
    const where = `${img.path}: detector ${this.name}`;
    try {
      return await this.endpoint.post('', { image: bytes.toString('base64'), filename: img.rel }, (json) => this.parse(json, where), signal);
    } catch (err) {
      if (err instanceof ModelResponseError && !err.message.startsWith(img.path)) err.message = `${img.path}: ${err.message}`;
      throw err;
    }
  }

  private parse(json: unknown, where: string): ClassDetections {
    const r = answerSchema.safeParse(json);
    if (!r.success) {
      const why = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
      throw new ModelResponseError('malformed_response', `${where}: the answer is not {"detections": {...}}: ${why}`);
    }
    const raw: RawDetection[] = [];
    for (const [cls, list] of Object.entries(r.data.detections)) {
      for (const e of list) {
        if (Array.isArray(e)) raw.push({ cls, box: [e[0], e[1], e[2], e[3]], score: e[4] });
        else raw.push({ cls, box: e.box, score: e.score, ...(e.mask ? { mask: e.mask as RawDetection['mask'] } : {}), ...(e.color ? { color: e.color } : {}) });
      }
    }
    // An unknown class is the server's mistake, not a glitch: finishDetections throws a plain error, which is not retried.
    return finishDetections(raw, this.objectNames, this.minScore, where);
  }

  async close(): Promise<void> {
    this.endpoint.close();
  }
}
