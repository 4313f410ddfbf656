/** Image file extensions bitprep names formats by (WebDataset members, `imageExt`). */
export type ImageExt = 'jpg' | 'png' | 'gif' | 'webp' | 'tiff' | 'avif' | 'heic' | 'bmp';

/**
 * The image format of bytes from their magic numbers, as a file extension; undefined if not an
 * image. The one sniffer: downloads check bodies with it, decoding names formats in its errors.
 */
export function sniffImage(b: Uint8Array): ImageExt | undefined {
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpg';
  if (b.length >= 8 && ascii(0, 8) === '\x89PNG\r\n\x1a\n') return 'png';
  if (b.length >= 6 && (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a')) return 'gif';
  if (b.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  if (b.length >= 4 && ['II*\0', 'MM\0*', 'II+\0', 'MM\0+'].includes(ascii(0, 4))) return 'tiff';
  if (b.length >= 12 && ascii(4, 8) === 'ftyp') {
    const brand = ascii(8, 12);
    if (brand === 'avif' || brand === 'avis') return 'avif';
    if (['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1'].includes(brand)) return 'heic';
  }
  // "BM" alone matches too much text; also require the DIB header size of a real BMP.
  if (b.length >= 18 && ascii(0, 2) === 'BM' && [12, 40, 52, 56, 64, 108, 124].includes(b[14] | (b[15] << 8))) return 'bmp';
  return undefined;
}

/** sharp's (libvips') name of a format: `jpeg` and `heif` where the extension says `jpg` and `heic`. */
export function sharpFormat(ext: ImageExt): string {
  return ext === 'jpg' ? 'jpeg' : ext === 'heic' ? 'heif' : ext;
}
