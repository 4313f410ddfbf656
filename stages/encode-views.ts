import { cropGeometry, cropSides, type CropDraw } from '../src/images/train-crop.js';
import { deriveSeed, hash32 } from './mix/hash.js';

/**
 * The random crops pre-encode stores per image (`encoder.views`): view v of an image is drawn
 * from (seed, key, v) alone — not from a random stream — so a rerun, another unit split or
 * another machine makes the same crops, and views of one image differ from each other as the
 * reference training's successive random_crop_arr draws do: the shorter side uniform over
 * size … ceil(size / 0.8), the offsets uniform over the resized image, a flip with probability 0.5.
 */
export function drawView(seed: number, key: string, view: number, width: number, height: number, size: number): CropDraw {
  const s = deriveSeed(seed, 'view');
  const u = (k: number): number => hash32(`${key}\u0000${view}\u0000${k}`, s) / 4294967296;
  const [lo, hi] = cropSides(size);
  const side = lo + Math.floor(u(0) * (hi - lo + 1));
  const g = cropGeometry(width, height, side);
  return { side, top: Math.floor(u(1) * (g.height - size + 1)), left: Math.floor(u(2) * (g.width - size + 1)), flip: u(3) < 0.5 };
}
