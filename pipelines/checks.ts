import { readdir, stat } from 'node:fs/promises';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { didYouMean } from '../src/config/preflight.js';
import { parquetSourceFromStore, readParquetMeta } from '../src/formats/parquet-read.js';
import type { Logger } from '../src/log.js';
import type { ModelSource } from '../src/models/model-source.js';
import { CUDA_INSTALL_HINT, cudaMissingReason, OnnxTensorModel } from '../src/models/onnx-model.js';
import type { TensorModel } from '../src/models/tensor.js';
import { openInputFile } from '../src/stores/input-file.js';
import { openStore } from '../src/stores/open-store.js';
import { isHfUrl } from '../src/stores/hf-url.js';
import { expandHttpInput, isHttpInput } from '../src/stores/remote-inputs.js';
import { tableColumns, tableExtensions, tableFileOf, type TableFile, type TableSourceOptions } from '../stages/sources/table-source.js';
import { AESTHETIC_DIMS, AestheticHead } from '../stages/aesthetic-head.js';
import { checkClipModel, checkEmbeddingPairs } from '../stages/aesthetic.js';
import { BIT_ENCODER_CONTRACT, BitEncoderContractError } from '../stages/bit-encoder.js';
import { checkDetectorModel } from '../stages/ocr/detector-stage.js';
import { detectorStageOptions, type AestheticOptions, type OcrOptions } from './annotations.js';

/**
 * The pieces every job's plan-time check (`Job.check`, beside each job) is made of: inputs,
 * Parquet columns, model files, the aesthetic and OCR sections. Each returns every problem it
 * finds, one line naming the config key, the file and the column, and never stops at the first. They read only
 * what is cheap to read (directory listings, Parquet footers, model files up to a size), and
 * never connect to a model server.
 */

/**
 * ONNX files up to this size are loaded at plan time so their contract is checked there; a larger
 * one (a full CLIP ViT-L/14 tower is ~1.2 GB) is only checked to exist, and its contract is
 * checked when the run loads it, before any unit starts, so planning stays quick.
 */
export const PLAN_TIME_MODEL_LOAD_LIMIT = 256 * 1024 * 1024;

export const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** A path as given, with its absolute form when it is relative (the working directory may not be the one expected). */
export const shown = (p: string): string => (p.startsWith('s3://') || isAbsolute(p) ? p : `${p} (${resolve(p)})`);

/** Runs checks a few at a time (footers of many s3:// files), keeping their order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The problem with a local file or an s3:// object that should exist (missing, not a file, unreadable), or undefined. */
export async function fileProblem(key: string, path: string, what = 'file'): Promise<string | undefined> {
  if (path.startsWith('s3://') || isHttpInput(path)) {
    try {
      const { store, name } = openInputFile(path);
      return (await store.size(name)) === undefined ? `${key}: ${path} does not exist` : undefined;
    } catch (err) {
      return `${key}: cannot read ${path}: ${messageOf(err)}`;
    }
  }
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => err);
  if (st instanceof Error) return st.code === 'ENOENT' || st.code === 'ENOTDIR' ? `${key}: ${shown(path)} does not exist` : `${key}: cannot read ${shown(path)}: ${st.message}`;
  if (!st.isFile()) return `${key}: ${shown(path)} is not a ${what}`;
  return undefined;
}

/**
 * Expands input paths as the planners do (stages/sources): a file is itself; a local directory
 * holds its top-level `*<ext>` files; an s3:// URL ending in `<ext>` is one object, any other a
 * prefix listed for them. A path that does not exist, a directory or prefix with none of them,
 * and a listing that fails are problems naming `key[i]`.
 */
export async function listInputFiles(key: string, paths: readonly string[], extensions: string | readonly string[]): Promise<{ files: string[]; problems: string[] }> {
  const exts = typeof extensions === 'string' ? [extensions] : extensions;
  const has = (name: string) => exts.some((e) => name.endsWith(e));
  const ext = exts.join(', ');
  const per = await mapLimit(paths, 8, async (p, i): Promise<{ files: string[]; problem?: string }> => {
    const k = `${key}[${i}]`;
    if (isHttpInput(p)) {
      try {
        const files = await expandHttpInput(p, has);
        // A named https:// file must be there (a HEAD); hf:// files come from the Hub's own listing.
        const missing = isHfUrl(p) ? undefined : await fileProblem(k, p);
        return missing ? { files: [], problem: missing } : { files };
      } catch (err) {
        return { files: [], problem: `${k}: ${messageOf(err)}` };
      }
    }
    if (p.startsWith('s3://')) {
      if (has(p)) {
        const problem = await fileProblem(k, p);
        return problem ? { files: [], problem } : { files: [p] };
      }
      const base = p.replace(/\/+$/, '');
      try {
        const names = (await openStore(base).list()).filter(has);
        if (names.length === 0) return { files: [], problem: `${k}: ${p} holds no ${ext} files` };
        return { files: names.map((n) => `${base}/${n}`) };
      } catch (err) {
        return { files: [], problem: `${k}: cannot list ${p}: ${messageOf(err)}` };
      }
    }
    const st = await stat(p).catch((err: NodeJS.ErrnoException) => err);
    if (st instanceof Error) {
      return { files: [], problem: st.code === 'ENOENT' || st.code === 'ENOTDIR' ? `${k}: ${shown(p)} does not exist` : `${k}: cannot read ${shown(p)}: ${st.message}` };
    }
    if (st.isDirectory()) {
      const listed = await readdir(p).catch((err: Error) => err);
      if (listed instanceof Error) return { files: [], problem: `${k}: cannot list ${shown(p)}: ${listed.message}` };
      const names = listed.filter(has).sort();
      if (names.length === 0) return { files: [], problem: `${k}: directory ${shown(p)} holds no ${ext} files` };
      return { files: names.map((n) => join(p, n)) };
    }
    return { files: [p] };
  });
  return { files: per.flatMap((r) => r.files), problems: per.flatMap((r) => (r.problem ? [r.problem] : [])) };
}

/**
 * Column names of every readable table: a Parquet footer, a CSV/TSV header line (or the configured
 * `columns`), the keys of a JSON Lines file's first 1000 records. An unreadable one is a problem naming `key`.
 */
export async function readSchemas(key: string, files: readonly (string | TableFile)[], columns?: readonly string[]): Promise<{ schemas: Map<string, string[]>; problems: string[] }> {
  const read = await mapLimit(files, 8, async (file): Promise<{ columns?: string[]; problem?: string }> => {
    const f = typeof file === 'string' ? { uri: file, format: 'parquet' as const, gzip: false } : file;
    try {
      return { columns: await tableColumns(f, columns) };
    } catch (err) {
      return { problem: `${key}: cannot read ${f.format === 'parquet' ? 'the Parquet footer of ' : ''}${f.uri}: ${messageOf(err)}` };
    }
  });
  const schemas = new Map<string, string[]>();
  read.forEach((r, i) => r.columns && schemas.set(typeof files[i] === 'string' ? files[i] : files[i].uri, r.columns));
  return { schemas, problems: read.flatMap((r) => (r.problem ? [r.problem] : [])) };
}

/**
 * The problem when `column` is missing from some of the files' schemas, or undefined: names the
 * files (the first two, then how many more), and suggests a close column name of those files (or
 * of `extra`, names the job adds itself) or lists the columns.
 */
export function missingColumnProblem(key: string, column: string, schemas: ReadonlyMap<string, readonly string[]>, extra: readonly string[] = []): string | undefined {
  const lacking = [...schemas].filter(([, cols]) => !cols.includes(column));
  if (lacking.length === 0) return undefined;
  const total = schemas.size;
  const names = lacking.map(([f]) => f);
  const where =
    lacking.length === 1 ? names[0]
      : lacking.length === total ? `any of the ${total} input files (${names.slice(0, 2).join(', ')}${total > 2 ? ', …' : ''})`
        : `${lacking.length} of the ${total} input files (${names.slice(0, 2).join(', ')}${lacking.length > 2 ? ', …' : ''})`;
  const columns = [...new Set([...lacking.flatMap(([, cols]) => cols), ...extra])];
  const hint = didYouMean(column, columns);
  const list = lacking[0][1];
  return `${key}: column ${column} is not in ${where} (${hint ? `did you mean ${hint}?` : `columns: ${list.slice(0, 12).join(', ')}${list.length > 12 ? `, … ${list.length - 12} more` : ''}`})`;
}

/**
 * A model source: an ONNX file exists, its CUDA provider can load when no CPU fallback is given,
 * and (up to PLAN_TIME_MODEL_LOAD_LIMIT) it loads and passes `contract`, which throws on a
 * mismatch. KServe endpoints are not contacted at plan time.
 */
export async function checkModelSource(key: string, src: ModelSource, contract: (m: TensorModel) => void, log: Logger): Promise<string[]> {
  if (!('onnx' in src)) return [];
  const problems: string[] = [];
  if (src.providers.includes('cuda') && !src.providers.includes('cpu')) {
    const missing = cudaMissingReason();
    if (missing) problems.push(`${key}.providers: CUDA execution provider unavailable (${missing}); ${CUDA_INSTALL_HINT}`);
  }
  const path = src.onnx;
  if (path.startsWith('s3://')) return [...problems, `${key}.onnx: ${path}: ONNX models are read from a local file (copy it to the machine)`];
  const missing = await fileProblem(`${key}.onnx`, path, 'file (an .onnx model)');
  if (missing) return [...problems, missing];
  const { size } = await stat(path);
  if (size > PLAN_TIME_MODEL_LOAD_LIMIT) {
    log.info(`${key}.onnx: ${path} is ${(size / 2 ** 20).toFixed(0)} MiB; its contract is checked when the run loads it`);
    return problems;
  }
  let model: OnnxTensorModel;
  try {
    model = await OnnxTensorModel.load(path, { executionProviders: ['cpu'] });
  } catch (err) {
    return [...problems, `${key}.onnx: ${messageOf(err)}`];
  }
  try {
    contract(model);
  } catch (err) {
    if (err instanceof BitEncoderContractError) problems.push(...err.problems.map((p) => `${key}.onnx ${path}: BIT encoder contract: ${p} (${BIT_ENCODER_CONTRACT.exportHint})`));
    else problems.push(`${key}.onnx ${path}: ${messageOf(err)}`);
  } finally {
    await model.close();
  }
  return problems;
}

/** Columns the table source hands every sample besides the file's own (stages/sources/table-source.ts). */
export const PARQUET_SOURCE_FIELDS = ['url', 'caption', 'source_file', 'source_row'];

/** A URL/caption table input: files exist, their columns read (Parquet footers, CSV headers, JSON Lines keys), url and caption columns in each. */
export async function checkParquetInput(key: string, input: TableSourceOptions) {
  const format = input.format ?? 'auto';
  const listed = await listInputFiles(`${key}.paths`, input.paths, tableExtensions(format));
  const files: TableFile[] = [];
  const problems = [...listed.problems];
  for (const uri of listed.files) {
    try {
      files.push(tableFileOf(uri, format));
    } catch (err) {
      problems.push(`${key}.paths: ${messageOf(err)}`);
    }
  }
  const named = files.find((f) => f.format === 'parquet' || f.format === 'jsonl');
  if (input.columns && named) problems.push(`${key}.columns: only CSV and TSV files without a header line take column names; ${named.uri} names its own`);
  const read = await readSchemas(`${key}.paths`, files, input.columns);
  problems.push(...read.problems);
  for (const [k, column] of [['url_column', input.url_column], ['caption_column', input.caption_column]] as const) {
    const p = missingColumnProblem(`${key}.${k}`, column, read.schemas);
    if (p) problems.push(p);
  }
  return { problems, files: listed.files, schemas: read.schemas };
}

/**
 * The aesthetic section: the head loads; a CLIP tower exists and fits the head; precomputed
 * embedding pairs exist, line up with the head and each other, carry the URL column (join
 * `url`) or cover every input file (join `row`).
 */
export async function checkAesthetic(key: string, a: AestheticOptions, inputFiles: readonly string[], log: Logger): Promise<string[]> {
  const problems: string[] = [];
  let head: AestheticHead | undefined;
  const headMissing = a.head.startsWith('s3://') ? `${key}.head: ${a.head}: the head is read from a local file (copy it to the machine)` : await fileProblem(`${key}.head`, a.head, 'file (safetensors)');
  if (headMissing) problems.push(headMissing);
  else {
    try {
      head = await AestheticHead.load(a.head);
    } catch (err) {
      problems.push(`${key}.head: ${messageOf(err)}`);
    }
  }
  // Without a readable head, the tower and the embeddings are checked against the width of LAION's.
  const dim = head?.dim ?? AESTHETIC_DIMS[0];
  if (a.clip) {
    const clip = a.clip;
    problems.push(...(await checkModelSource(`${key}.clip.model`, clip.model, (m) => checkClipModel(m, { ...clip, dim }), log)));
  }
  if (a.embeddings) {
    const e = a.embeddings;
    const k = `${key}.embeddings`;
    const metaSchemas = new Map<string, string[]>();
    const perPair = await mapLimit(e.pairs, 8, async (p, i): Promise<{ problems: string[]; columns?: string[] }> => {
      const npy = p.embeddings.startsWith('s3://') ? `${k}.pairs[${i}].embeddings: ${p.embeddings}: embeddings are read from a local file (copy it to the machine)` : fileProblem(`${k}.pairs[${i}].embeddings`, p.embeddings);
      const missing = (await Promise.all([npy, fileProblem(`${k}.pairs[${i}].metadata`, p.metadata)])).filter((x): x is string => !!x);
      if (missing.length > 0) return { problems: missing };
      try {
        await checkEmbeddingPairs({ head: head ?? new AestheticHead(new Float64Array(dim), 0), pairs: [p], join: 'row' });
        const { store, name } = openInputFile(p.metadata);
        return { problems: [], columns: (await readParquetMeta(await parquetSourceFromStore(store, name))).columns };
      } catch (err) {
        return { problems: [`${k}.pairs[${i}]: ${messageOf(err)}`] };
      }
    });
    perPair.forEach((r, i) => {
      problems.push(...r.problems);
      if (r.columns) metaSchemas.set(e.pairs[i].metadata, r.columns);
    });
    if (e.join === 'url') {
      const p = missingColumnProblem(`${k}.url_column`, e.url_column, metaSchemas);
      if (p) problems.push(p);
    } else {
      // The stage finds a row's pair by the input file's path, else by its file name.
      const byBase = new Map<string, string>();
      for (const p of e.pairs) {
        const b = basename(p.metadata);
        const other = byBase.get(b);
        if (other !== undefined) problems.push(`${k}.pairs: ${other} and ${p.metadata} share the file name ${b}, so join row cannot tell them apart`);
        byBase.set(b, p.metadata);
      }
      const paths = new Set(e.pairs.map((p) => p.metadata));
      const unpaired = inputFiles.filter((f) => !paths.has(f) && !byBase.has(basename(f)));
      if (unpaired.length > 0) {
        problems.push(`${k}.pairs: join row needs a pair whose metadata is each input file, and ${unpaired.length === 1 ? `${unpaired[0]} has none` : `${unpaired.length} input files have none (${unpaired.slice(0, 2).join(', ')}${unpaired.length > 2 ? ', …' : ''})`}; every row of ${unpaired.length === 1 ? 'it' : 'them'} would fail no_embedding`);
      }
    }
  }
  return problems;
}

/** The OCR section: a detector model given exists and is one the text detector can drive with the options the stage will get. */
export async function checkOcr(key: string, o: OcrOptions, log: Logger): Promise<string[]> {
  const model = o.detector?.model;
  if ((o.backend !== 'detector' && o.backend !== 'ppocr') || !model) return [];
  return checkModelSource(`${key}.detector.model`, model, (m) => checkDetectorModel(m, detectorStageOptions(o)), log);
}

/** Image-shard inputs (recaption, dalle-ingest, pre-encode): every path exists and holds tars. */
export const checkTarInputs = async (paths: readonly string[]): Promise<string[]> => (await listInputFiles('input.paths', paths, '.tar')).problems;
