/** A canonical evaluation file that `bitprep fetch-assets` may download. */
export interface Asset {
  /** File name under the target directory; also the name given on the command line. */
  name: string;
  url: string;
  /** Lower-case hex SHA-256; null when not pinned (then fetching needs --allow-unpinned). */
  sha256: string | null;
  /** Size in bytes; null when not pinned. */
  size: number | null;
  description: string;
}

const GENEVAL = 'https://raw.githubusercontent.com/djghosh13/geneval/af4902f';
const IMAGEREWARD = 'https://raw.githubusercontent.com/THUDM/ImageReward/1beb4e4de0932acbe7fc090c51208048b6269b58';

/**
 * The registry. Hashes and sizes of the GenEval and ImageReward files were computed from the copies
 * kept in shared/reference/ (copies of the canonical files), so a changed upstream file is refused
 * rather than silently evaluated against.
 */
export const ASSETS: readonly Asset[] = [
  {
    name: 'evaluation_metadata.jsonl',
    url: `${GENEVAL}/prompts/evaluation_metadata.jsonl`,
    sha256: '5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13',
    size: 85209,
    description: 'GenEval prompts and checks, 553 lines (djghosh13/geneval @ af4902f, MIT)',
  },
  {
    name: 'object_names.txt',
    url: `${GENEVAL}/prompts/object_names.txt`,
    sha256: '608f6a0e5c8ca1c7a92b818430141fe268c85b7930b50f4160f1d65893b5bacd',
    size: 642,
    description: 'GenEval class names, 80, in detector order (djghosh13/geneval @ af4902f, MIT)',
  },
  {
    name: 'benchmark-prompts.json',
    url: `${IMAGEREWARD}/benchmark/benchmark-prompts.json`,
    sha256: '34682e824ebb3ad8e2531b3cde1b362dc72e1e29946ff6fab77bb49e9edb4b21',
    size: 14558,
    description: 'ImageReward benchmark, 100 {id, prompt} (THUDM/ImageReward, Apache-2.0)',
  },
  {
    // No trusted copy was at hand to hash, and a hash copied from elsewhere would be a guess.
    name: 'annotations_trainval2014.zip',
    url: 'http://images.cocodataset.org/annotations/annotations_trainval2014.zip',
    sha256: null,
    size: null,
    description: 'MSCOCO 2014 annotations (~240 MB, CC BY 4.0); unzip for annotations/captions_val2014.json. Unpinned: needs --allow-unpinned',
  },
];

/** Looks up assets by name; unknown names are an error listing the known ones. */
export function selectAssets(registry: readonly Asset[], names: string[]): Asset[] {
  return names.map((n) => {
    const a = registry.find((x) => x.name === n);
    if (!a) throw new Error(`unknown asset "${n}"; known: ${registry.map((x) => x.name).join(', ')}`);
    return a;
  });
}
