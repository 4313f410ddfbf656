import { Command, InvalidArgumentError } from 'commander';
import { integerOption } from './option-parsers.js';
import { startKServeServer } from '../models/kserve-server.js';
import type { TensorModel } from '../models/tensor.js';

const modelArg = (v: string, prev: [string, string][] = []): [string, string][] => {
  const i = v.indexOf('=');
  if (i <= 0 || i === v.length - 1) throw new InvalidArgumentError(`expected NAME=PATH, got "${v}"`);
  return [...prev, [v.slice(0, i), v.slice(i + 1)]];
};

/**
 * `bitprep serve`: serves tensor models over KServe v2 until SIGINT/SIGTERM. The loader is
 * injected so src/cli does not pick the runtime (the composition root passes ONNX loading).
 */
export function serveCommand(loadModel: (path: string, name: string) => Promise<TensorModel>): Command {
  return new Command('serve')
    .requiredOption('--model <name=path>', 'a model to serve, e.g. --model clip=clip.onnx (repeatable)', modelArg)
    .option('--port <n>', 'port (0 = any free one)', integerOption('--port'), 8000)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--max-batch <n>', 'rows per gathered model call; 1 turns dynamic batching off', integerOption('--max-batch', { min: 1 }), 1)
    .option('--max-delay-ms <ms>', 'how long a request waits for others to batch with', integerOption('--max-delay-ms'), 5)
    .option(
      '--max-request-mb <n>',
      'largest request body in MiB (larger → 413). Default: per model, room for a binary request of --max-batch samples ' +
        '(max-batch × bytes of one sample of every input, from the model\'s input shapes, + 1 MiB header room), at least 64 MiB; ' +
        'e.g. the BIT encoder at 512 px with --max-batch 32 gets 97 MiB. A model whose inputs have dynamic dims besides the batch ' +
        '(H, W) gets 64 MiB: set this for larger requests. JSON-encoded requests are several times larger than binary ones',
      integerOption('--max-request-mb', { min: 1 }),
    )
    .addHelpText('after', '\nThe request body limit of each model, and how it was chosen, is printed at start-up.')
    .action(async (o: { model: [string, string][]; port: number; host: string; maxBatch: number; maxDelayMs: number; maxRequestMb?: number }) => {
      const models: Record<string, TensorModel> = {};
      try {
        for (const [name, path] of o.model) {
          if (models[name]) throw new InvalidArgumentError(`model name "${name}" given twice`);
          models[name] = await loadModel(path, name);
        }
        const maxRequestBytes = o.maxRequestMb === undefined ? undefined : o.maxRequestMb * 1024 * 1024;
        const server = await startKServeServer(models, { port: o.port, host: o.host, maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs, maxRequestBytes });
        for (const [name, m] of Object.entries(models)) {
          const ins = m.inputs.map((s) => `${s.name} ${s.dtype}[${s.shape.map((d) => (d < 0 ? '?' : d)).join(',')}]`).join(', ');
          process.stdout.write(`serving ${name} (${ins}) at ${server.url}/v2/models/${encodeURIComponent(name)}\n`);
          process.stdout.write(`  ${name}: request body limit ${server.limits[name].reason}\n`);
        }
        const signal = await new Promise<NodeJS.Signals>((resolve) => {
          const stop = (s: NodeJS.Signals) => {
            process.off('SIGINT', stop);
            process.off('SIGTERM', stop);
            resolve(s);
          };
          process.on('SIGINT', stop);
          process.on('SIGTERM', stop);
        });
        process.stdout.write(`${signal}: stopping\n`);
        await server.close();
      } finally {
        await Promise.allSettled(Object.values(models).map((m) => m.close()));
      }
    });
}
