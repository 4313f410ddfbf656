import sharp from 'sharp';

/**
 * Per-bit fraction of ones as a PNG data URI: one row per token, one column per bit, white = always
 * 1, black = always 0, mid grey = used. A raster keeps 8192 cells to a few KB where SVG would
 * need 8192 elements.
 */
export async function bitHeatmapPng(bitOnesFraction: number[], bitsPerToken = 64, scale = 4): Promise<string> {
  const tokens = Math.ceil(bitOnesFraction.length / bitsPerToken);
  const grey = Uint8Array.from({ length: tokens * bitsPerToken }, (_, i) => Math.round(255 * (bitOnesFraction[i] ?? 0)));
  const png = await sharp(grey, { raw: { width: bitsPerToken, height: tokens, channels: 1 } }).resize(bitsPerToken * scale, tokens * scale, { kernel: 'nearest' }).png().toBuffer();
  return `data:image/png;base64,${png.toString('base64')}`;
}
