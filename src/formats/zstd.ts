import { compress, init } from '@bokuweb/zstd-wasm';
import zlib from 'node:zlib';

// Node 20 has no zstd in node:zlib (22.15+ does) and hyparquet-writer has no zstd encoder, so a
// WebAssembly build of the reference library fills in; the .wasm ships in the package (offline).
const native = (zlib as unknown as { zstdCompressSync?: (b: Uint8Array, o?: object) => Uint8Array }).zstdCompressSync;
if (!native) await init();

/** Zstandard-compresses `data` (a complete frame, readable by any zstd decoder). */
export function zstdCompress(data: Uint8Array, level = 3): Uint8Array {
  if (native) return native(data, { params: { [(zlib.constants as unknown as Record<string, number>).ZSTD_c_compressionLevel]: level } });
  return compress(data, level);
}
