import { Command, InvalidArgumentError } from 'commander';
import { fractionOption, integerOption } from '../../src/cli/option-parsers.js';
import { consoleLogger } from '../../src/log.js';
import { loadTensorModels, parseModelSpec } from '../../src/models/model-source.js';
import { detectFolder, type DetectSummary } from './detect.js';
import { DEFAULT_MIN_SCORE, DEFAULT_TENSOR_NAMES, GENEVAL_OBJECT_NAMES, TensorDetector, type Detector, type DetectorTensorNames } from './detector.js';
import { EndpointDetector } from './detector-endpoint.js';
import { readObjectNames } from './run.js';

/** Parses `image=pixels,boxes=dets` into renames of the detector contract's tensors. */
export function parseTensorNames(v: string): Partial<DetectorTensorNames> {
  const out: Partial<DetectorTensorNames> = {};
  for (const part of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z]+)=(.+)$/.exec(part);
    if (!m || !(m[1] in DEFAULT_TENSOR_NAMES)) throw new InvalidArgumentError(`--tensor-names takes KEY=NAME pairs with KEY one of ${Object.keys(DEFAULT_TENSOR_NAMES).join(', ')}; got ${JSON.stringify(part)}`);
    out[m[1] as keyof DetectorTensorNames] = m[2];
  }
  return out;
}

interface Options {
  detector?: string;
  detectorUrl?: string;
  out: string;
  minScore: number;
  concurrency: number;
  objectNames?: string;
  tensorNames?: Partial<DetectorTensorNames>;
  cuda?: boolean;
  timeout: number;
  json?: boolean;
}

/**
 * `bitprep eval detect <images-dir> (--detector MODEL | --detector-url URL) --out FILE`: runs a
 * detector over a GenEval image folder and writes the detections file `bitprep eval geneval
 * --detections` reads. The tensor-model contract is TensorDetector's (detector.ts), the HTTP one
 * EndpointDetector's (detector-endpoint.ts).
 */
export function detectCommand(): Command {
  return new Command('detect')
    .argument('<images-dir>', 'GenEval layout: <00000>/metadata.jsonl and <00000>/samples/0000.png… per prompt')
    .option('--detector <model>', 'tensor model: a .onnx file, or KServe v2 URLs http://host:8000/v2/models/NAME (comma-separated replicas); input image UINT8 [1,H,W,3], outputs boxes FP32 [K,4], scores FP32 [K], labels INT64 [K], optional masks [K,H,W]')
    .option('--detector-url <url>', 'HTTP endpoint: POST {"image": base64, "filename": rel} → {"detections": {"<class>": [[x1, y1, x2, y2, score], …]}}')
    .requiredOption('--out <file>', 'the detections file (JSON Lines); an existing one is resumed')
    .option('--min-score <t>', 'keep detections with score above this (GenEval never keeps any at or below 0.3)', fractionOption('--min-score'), DEFAULT_MIN_SCORE)
    .option('--concurrency <n>', 'images in flight at once (the tensor contract is one image per call)', integerOption('--concurrency', { min: 1 }), 4)
    .option('--object-names <file>', "class names in label order (default: GenEval's object_names.txt, COCO's 80 classes)")
    .option('--tensor-names <map>', 'rename contract tensors, e.g. image=pixel_values,boxes=det_boxes (keys: image, boxes, scores, labels, masks)', parseTensorNames)
    .option('--cuda', 'run an .onnx detector with the CUDA execution provider (falls back to CPU with a warning)')
    .option('--timeout <s>', 'per HTTP attempt of --detector-url, in seconds', integerOption('--timeout', { min: 1 }), 120)
    .option('--json', 'print the summary as JSON')
    .action(async (imagesDir: string, o: Options) => {
      if ((o.detector === undefined) === (o.detectorUrl === undefined)) throw new InvalidArgumentError('give exactly one of --detector MODEL and --detector-url URL');
      const objectNames = o.objectNames ? await readObjectNames(o.objectNames) : GENEVAL_OBJECT_NAMES;
      let detector: Detector;
      if (o.detector !== undefined) {
        const models = await loadTensorModels(parseModelSpec(o.detector, { cuda: o.cuda }), 'detector');
        try {
          detector = TensorDetector.create(models, { name: o.detector, tensorNames: o.tensorNames, objectNames, minScore: o.minScore, maxInFlightPerReplica: Math.max(1, Math.ceil(o.concurrency / models.length)) });
        } catch (err) {
          await Promise.all(models.map((m) => m.client.close()));
          throw err;
        }
      } else {
        detector = new EndpointDetector({ url: o.detectorUrl!, concurrency: o.concurrency, timeoutMs: o.timeout * 1000, objectNames, minScore: o.minScore });
      }
      let summary: DetectSummary;
      try {
        summary = await detectFolder({
          imagesDir,
          out: o.out,
          detector,
          concurrency: o.concurrency,
          log: consoleLogger,
          onImage: (rel, done, total) => {
            if (done % 100 === 0 || done === total) consoleLogger.info(`detected ${done}/${total} (${rel})`);
          },
        });
      } finally {
        await detector.close();
      }
      if (o.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else process.stdout.write(`${summary.images} image(s): ${summary.detected} detected now, ${summary.resumed} from an earlier run; ${summary.detections} detection(s) above ${o.minScore}\ndetector: ${summary.detector}\ndetections: ${summary.out}\n`);
    });
}
