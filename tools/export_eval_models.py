#!/usr/bin/env python3
"""Export the evaluation models bitprep's metrics run (README: Evaluation) to ONNX.

bitprep has no PyTorch: every evaluation model is a tensor model (ONNX in process, or the same
file served over KServe v2 by Triton or `bitprep serve`). This script writes each model with the
exact input/output contract the metric checks at start-up, and checks the ONNX file against the
PyTorch module on random inputs before it exits (skip with --no-check).

  clip         CLIP image + text towers (open_clip). Two uses, two models:
                 GenEval colors:  --arch ViT-L-14 --pretrained openai
                 CLIP score:      --arch ViT-g-14 --pretrained laion2b_s12b_b42k   (lower-case g)
               writes <out>/image.onnx  input  pixel_values FP32 [N,3,224,224] (CLIP mean/std)
                                        output image_embeds FP32 [N,D]   (not normalised)
                      <out>/text.onnx   input  input_ids    INT64 [N,77] (SOT 49406 … EOT 49407, 0 pad)
                                        output text_embeds  FP32 [N,D]   (not normalised)
                      <out>/tokenizer.json  (with --tokenizer-from, see below)
  inception    clean-fid's Inception (inception-2015-12-05.pt, the TensorFlow FID network as
               TorchScript): writes <out>/inception.onnx
                                        input  images   FP32 [N,3,299,299], values in [0, 255]
                                        output features FP32 [N,2048] (pool3)
               The graph does clean-fid's own normalisation ((x - 128) / 128) and does NOT resize:
               bitprep resizes to 299 exactly as clean-fid's "clean" mode does, before the model.
  imagereward  ImageReward-v1.0 (THUDM/ImageReward, `pip install image-reward`): writes
               <out>/imagereward.onnx  inputs pixel_values FP32 [N,3,224,224] (CLIP mean/std),
                                              input_ids INT64 [N,35], attention_mask INT64 [N,35]
                                       output reward FP32 [N]  (RAW: bitprep applies
                                              (raw - 0.16717362830052426) / 1.0333394966054072)
               and <out>/tokenizer.json (bert-base-uncased + BLIP's [DEC]/[ENC], as the model uses).

Needs on the machine that runs it: torch (2.x recommended), onnx, onnxruntime (for the check),
and per model: open_clip_torch (clip), the inception-2015-12-05.pt file (inception; clean-fid
downloads it to its cache, or fetch it yourself from the URL in clean-fid's source), image-reward
(imagereward), transformers (tokenizer.json). Weights come from where those packages keep them;
this script downloads nothing itself. Models over 2 GB (ViT-g-14's towers) are written with ONNX
external data (<name>.onnx.data beside the file): keep the two files together.

Examples:
  python tools/export_eval_models.py clip --arch ViT-g-14 --pretrained laion2b_s12b_b42k \\
      --tokenizer-from laion/CLIP-ViT-g-14-laion2B-s12B-b42K --out models/clip-g14
  python tools/export_eval_models.py clip --arch ViT-L-14 --pretrained openai \\
      --tokenizer-from openai/clip-vit-large-patch14 --out models/clip-l14
  python tools/export_eval_models.py inception --torchscript ~/.cache/clean-fid/inception-2015-12-05.pt --out models
  python tools/export_eval_models.py imagereward --out models/imagereward
"""
from __future__ import annotations

import argparse
import os
import sys


def need(module: str, hint: str):
    try:
        return __import__(module)
    except ImportError as err:
        sys.exit(f"{module} is needed for this export ({hint}): {err}")


def export(model, args: tuple, names_in: list[str], names_out: list[str], path: str, dynamic: dict, opset: int) -> None:
    import torch

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, args, path, input_names=names_in, output_names=names_out,
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True)
    print(f"wrote {path}")


def check(model, args: tuple, names_in: list[str], path: str, tolerance: float) -> None:
    """Runs the ONNX file and the module on the same inputs; stops when they disagree."""
    import numpy as np
    import torch
    ort = need("onnxruntime", "the self-check; --no-check skips it")

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {n: a.cpu().numpy() for n, a in zip(names_in, args)}
    got = sess.run(None, feeds)[0]
    with torch.no_grad():
        want = model(*args).float().cpu().numpy()
    err = float(np.max(np.abs(got - want)) / max(1e-12, float(np.max(np.abs(want)))))
    print(f"check {os.path.basename(path)}: max |onnx - torch| / max |torch| = {err:.2e}")
    if err > tolerance:
        sys.exit(f"{path}: the ONNX model disagrees with PyTorch ({err:.2e} > {tolerance}); not usable")


def export_clip(a) -> None:
    import torch
    open_clip = need("open_clip", "pip install open_clip_torch")

    model, _, _ = open_clip.create_model_and_transforms(a.arch, pretrained=a.pretrained)
    # float32 on purpose: GigaGAN's CLIP score casts ViT-g-14 to float32, and GenEval runs ViT-L-14 in float32 on CPU-sized batches.
    model = model.float().eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size

    class ImageTower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m.encode_image(pixel_values)

    class TextTower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m.encode_text(input_ids)

    image = ImageTower(model).eval()
    text = TextTower(model).eval()
    px = torch.randn(2, 3, size, size)
    ids = torch.zeros(2, 77, dtype=torch.long)
    ids[:, 0] = 49406
    ids[0, 1:4] = torch.tensor([320, 1125, 49407])  # "a photo" + EOT
    ids[1, 1:3] = torch.tensor([1929, 49407])
    os.makedirs(a.out, exist_ok=True)
    ip = os.path.join(a.out, "image.onnx")
    tp = os.path.join(a.out, "text.onnx")
    export(image, (px,), ["pixel_values"], ["image_embeds"], ip, {"pixel_values": {0: "n"}, "image_embeds": {0: "n"}}, a.opset)
    export(text, (ids,), ["input_ids"], ["text_embeds"], tp, {"input_ids": {0: "n"}, "text_embeds": {0: "n"}}, a.opset)
    if not a.no_check:
        check(image, (px,), ["pixel_values"], ip, 1e-3)
        check(text, (ids,), ["input_ids"], tp, 1e-3)
    if a.tokenizer_from:
        transformers = need("transformers", "tokenizer.json")
        tok = transformers.CLIPTokenizerFast.from_pretrained(a.tokenizer_from)
        tok.backend_tokenizer.save(os.path.join(a.out, "tokenizer.json"))
        print(f"wrote {os.path.join(a.out, 'tokenizer.json')}")
    print(f"image size {size}; give bitprep --image-size {size} if it is not 224")


def export_inception(a) -> None:
    import torch

    base = torch.jit.load(a.torchscript, map_location="cpu").eval()

    class Inception(torch.nn.Module):
        """clean-fid's InceptionV3W with resize_inside=False: the input is already 299x299 in [0, 255]."""

        def __init__(self, b):
            super().__init__()
            self.base = b

        def forward(self, images):
            n = images.shape[0]
            return self.base.layers((images - 128) / 128).view((n, 2048))

    # Scripted, not traced: tracing cannot enter the loaded TorchScript's submodules.
    model = torch.jit.script(Inception(base).eval())
    x = torch.rand(2, 3, 299, 299) * 255
    path = os.path.join(a.out, "inception.onnx")
    export(model, (x,), ["images"], ["features"], path, {"images": {0: "n"}, "features": {0: "n"}}, a.opset)
    if not a.no_check:
        check(model, (x,), ["images"], path, 1e-4)


def export_imagereward(a) -> None:
    import torch
    RM = need("ImageReward", "pip install image-reward")

    rm = RM.load(a.name, device="cpu").float().eval()

    class Reward(torch.nn.Module):
        """ImageReward.score() without its preprocessing and normalisation, batched."""

        def __init__(self, m):
            super().__init__()
            self.blip = m.blip
            self.mlp = m.mlp

        def forward(self, pixel_values, input_ids, attention_mask):
            image_embeds = self.blip.visual_encoder(pixel_values)
            image_atts = torch.ones(image_embeds.size()[:-1], dtype=torch.long)
            out = self.blip.text_encoder(input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
                                         encoder_attention_mask=image_atts, return_dict=True)
            return self.mlp(out.last_hidden_state[:, 0, :].float()).squeeze(-1)

    model = Reward(rm).eval()
    enc = rm.blip.tokenizer(["a photo of a cat", "two dogs on a red sofa"], padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    args = (torch.randn(2, 3, 224, 224), enc.input_ids, enc.attention_mask)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "imagereward.onnx")
    names = ["pixel_values", "input_ids", "attention_mask"]
    export(model, args, names, ["reward"], path, {**{n: {0: "n"} for n in names}, "reward": {0: "n"}}, a.opset)
    if not a.no_check:
        check(model, args, names, path, 1e-3)
    transformers = need("transformers", "tokenizer.json")
    tok = transformers.BertTokenizerFast.from_pretrained("bert-base-uncased")
    # BLIP's init_tokenizer adds these two; they do not occur in prompts, but the ids must match the model's vocabulary.
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tok.backend_tokenizer.save(os.path.join(a.out, "tokenizer.json"))
    print(f"wrote {os.path.join(a.out, 'tokenizer.json')}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("clip")
    c.add_argument("--arch", required=True, help="open_clip architecture: ViT-L-14 (GenEval) or ViT-g-14 (CLIP score)")
    c.add_argument("--pretrained", required=True, help="openai (ViT-L-14) or laion2b_s12b_b42k (ViT-g-14)")
    c.add_argument("--tokenizer-from", help="a Hugging Face repo or folder with the CLIP tokenizer, saved as tokenizer.json")
    i = sub.add_parser("inception")
    i.add_argument("--torchscript", required=True, help="inception-2015-12-05.pt as clean-fid downloads it")
    r = sub.add_parser("imagereward")
    r.add_argument("--name", default="ImageReward-v1.0")
    for s in (c, i, r):
        s.add_argument("--out", required=True, help="output folder")
        s.add_argument("--opset", type=int, default=17)
        s.add_argument("--no-check", action="store_true", help="skip the ONNX-vs-PyTorch check")
    a = p.parse_args()
    need("torch", "pip install torch")
    need("onnx", "pip install onnx")
    {"clip": export_clip, "inception": export_inception, "imagereward": export_imagereward}[a.what](a)


if __name__ == "__main__":
    main()
