import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BitEncoderStandin } from '../../stages/bit-encoder-standin.js';

/** A torch module with the BIT encoder stand-in's contract: its one Conv 3→64 over a 16×8 grid of patches. */
const MODULE = String.raw`
import torch
class Standin(torch.nn.Module):
    def __init__(self, size):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 64, (size // 16, size // 8), stride=(size // 16, size // 8))
    def forward(self, image):
        y = self.conv(image)                                        # [N, 64, 16, 8]
        return y.permute(0, 2, 3, 1).reshape(y.shape[0], 128, 64)   # token t = row * 8 + col
`;

/** Saves the stand-in's weights as a torch state dict. */
const CHECKPOINT = String.raw`
import sys, numpy as np, torch
size, out = int(sys.argv[1]), sys.argv[2]
w = np.fromfile(sys.argv[3], dtype='<f4').reshape(64, 3, size // 16, size // 8)
b = np.fromfile(sys.argv[4], dtype='<f4')
torch.save({'conv.weight': torch.from_numpy(w.copy()), 'conv.bias': torch.from_numpy(b.copy())}, out)
`;

/**
 * Writes the stand-in as a PyTorch "reference checkout" in `dir` (module `standin_module`) with a
 * checkpoint of `standin`'s weights (Debian's python3-torch), and returns the arguments
 * tools/serve_bit_encoder.py locates it with, as for the real tokenizer.
 */
export async function writeTorchStandin(dir: string, standin: BitEncoderStandin, size: number): Promise<string[]> {
  await writeFile(join(dir, 'standin_module.py'), MODULE);
  await writeFile(join(dir, 'standin-w.f32'), Buffer.from(standin.weights.buffer, standin.weights.byteOffset, standin.weights.byteLength));
  await writeFile(join(dir, 'standin-b.f32'), Buffer.from(standin.bias.buffer, standin.bias.byteOffset, standin.bias.byteLength));
  const ckpt = join(dir, 'standin.pt');
  execFileSync('/usr/bin/python3', ['-c', CHECKPOINT, String(size), ckpt, join(dir, 'standin-w.f32'), join(dir, 'standin-b.f32')]);
  return ['--repo', dir, '--factory', 'standin_module:Standin', '--factory-kwargs', JSON.stringify({ size }), '--checkpoint', ckpt, '--logits-attr', 'forward', '--size', String(size)];
}
