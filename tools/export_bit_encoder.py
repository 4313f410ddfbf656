#!/usr/bin/env python3
"""Export the Instella-T2I BIT encoder and its quantizer projection to ONNX, for bitprep.

What it writes (the contract bitprep's checkBitEncoder holds a model to, stages/bit-encoder.ts):
  input  "image"   float32, or float16 with --fp16: [N, 3, S, S], RGB, NCHW, values x/127.5 - 1
                   (so in [-1, 1]); N is dynamic, S is --size (512, the tokenizer's training size)
  output "logits"  float32 always (also with --fp16): [N, 128, 64], the quantizer's Linear(768 -> 64)
                   applied to the encoder's 128 latent tokens. bit = logit > 0, which is the reference
                   inference rule sigmoid(logit) > 0.5; bitprep packs the bits (DESIGN.md, bit order).

What it needs, on the machine where you run it:
  - python >= 3.9, torch >= 1.13 (2.x recommended), numpy, onnx;
  - onnxruntime for the self-check (onnxruntime-gpu / onnxruntime-rocm to check on a GPU), or --no-check;
  - a checkout of the reference code, AMD-AGI/Instella-T2I (research-only licence: this script
    imports it from your checkout and copies none of it), with its requirements installed;
  - the tokenizer checkpoint.

How it finds the encoder. The reference repo's internals are not fixed, so every name is an
argument; when one is wrong the script stops and lists what the object does have:
  --repo DIR            the checkout, put first on sys.path (default: the current directory)
  --factory MOD:NAME    class or function in the checkout that builds the tokenizer, called with
                        --factory-kwargs (JSON; the string "{checkpoint}" in it becomes the checkpoint
                        path, for builders that load weights themselves; add --no-load-state then).
                        Not needed when the checkpoint is a whole pickled nn.Module.
  --state-key KEY       where the state dict sits in the checkpoint (default: auto, tries
                        state_dict, model, ema, module, tokenizer); --state-prefix PREFIX keeps only
                        keys under PREFIX (e.g. "tokenizer."), and "module." / "_orig_mod." are stripped.
  --encoder-attr PATH   dotted attribute of the tokenizer (a submodule or method) mapping the image
                        to the 128 latent tokens [N, 128, 768] (or [N, 768, 128], or a tuple starting
                        with one of them). Default "encoder".
  --quantizer-attr PATH the Linear(768 -> 64) giving the logits, or a module holding exactly one such
                        Linear (found and printed). Default "quantizer". Only the Linear is exported:
                        a quantizer's forward may sample Bernoulli bits, which is training behaviour.
  --logits-attr PATH    instead of the two above: a method or module returning logits [N, 128, 64].
  --model-input-range   "-1,1" (default; what the tokenizer is trained on) or "0,1" if the
                        attribute you export expects [0, 1]: the graph then maps [-1, 1] to [0, 1],
                        so the ONNX input stays in [-1, 1] either way.

If export fails inside a fused attention kernel (flash-attn), switch the checkout to torch's
scaled_dot_product_attention or its plain math path for the export; the ONNX graph does not need
flash-attn, and ONNX Runtime fuses attention itself.

Examples:
  python tools/export_bit_encoder.py --repo ~/Instella-T2I --factory tokenizer.model:Tokenizer \\
      --checkpoint ckpts/tokenizer.pth --out bit_encoder.onnx
  python tools/export_bit_encoder.py ... --fp16 --device cuda --out bit_encoder_fp16.onnx

Then check it from bitprep (checkBitEncoder) and serve it: `bitprep serve --model bit_encoder=bit_encoder.onnx`.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import traceback

TOKENS = 128
BITS_PER_TOKEN = 64
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
STATE_KEYS = ("state_dict", "model", "ema", "module", "tokenizer")
STRIP_PREFIXES = ("module.", "_orig_mod.")


class ExportError(Exception):
    """A problem the user can fix with an argument or an install; printed without a traceback."""


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Where the tokenizer is and how to reach its encoder: shared with serve_bit_encoder.py."""
    p.add_argument("--checkpoint", required=True, help="tokenizer checkpoint (state dict or pickled nn.Module)")
    p.add_argument("--size", type=int, default=512, help="image side S of the input [N,3,S,S] (default 512)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu; ROCm torch calls its GPUs cuda too)")
    p.add_argument("--repo", default=".", help="reference checkout, put first on sys.path (default: .)")
    p.add_argument("--factory", default=None, help="MODULE:CALLABLE building the tokenizer, e.g. tokenizer.model:Tokenizer")
    p.add_argument("--factory-kwargs", default="{}", help='JSON keyword arguments for --factory; "{checkpoint}" is replaced by the checkpoint path')
    p.add_argument("--no-load-state", action="store_true", help="the factory loads the weights itself; do not load --checkpoint into it")
    p.add_argument("--state-key", default=None, help="key of the state dict inside the checkpoint (default: auto)")
    p.add_argument("--state-prefix", default="", help='keep only state-dict keys under this prefix, stripped (e.g. "tokenizer.")')
    p.add_argument("--non-strict", action="store_true", help="load the state dict with strict=False (missing/unexpected keys are printed)")
    p.add_argument("--encoder-attr", default="encoder", help="dotted attribute: image -> latent tokens [N,128,768] (default: encoder)")
    p.add_argument("--quantizer-attr", default="quantizer", help="dotted attribute: Linear(768->64) or a module holding one (default: quantizer)")
    p.add_argument("--logits-attr", default=None, help="dotted attribute returning logits [N,128,64] directly (overrides encoder/quantizer)")
    p.add_argument("--model-input-range", choices=["-1,1", "0,1"], default="-1,1", help="range the attribute expects (default -1,1)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Export the BIT encoder + quantizer projection (logits [N,128,64]) to ONNX for bitprep.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See the header of this file for how the tokenizer is located in the reference checkout.",
    )
    add_model_arguments(p)
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--fp16", action="store_true", help="run the encoder in float16 with a float16 input (logits stay float32); needs a GPU")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    p.add_argument("--batch-for-check", type=int, default=4, help="batch size of the self-check (default 4)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime self-check")
    p.add_argument("--dynamo", action="store_true", help="use torch's dynamo-based exporter (torch >= 2.5) instead of the TorchScript one")
    p.add_argument("--providers", default=None, help="comma-separated onnxruntime providers for the check (default: GPU ones available, then CPU)")
    p.add_argument("--max-abs-diff", type=float, default=None, help="fail the check above this max |onnx - torch| (default 1e-3, 5e-2 with --fp16)")
    p.add_argument("--min-bit-agreement", type=float, default=None, help="fail the check below this share of equal bits (default 0.999, 0.99 with --fp16)")
    args = p.parse_args(argv)
    if args.opset < 17:
        p.error("--opset must be >= 17 (LayerNormalization is a single op from 17 on)")
    if args.size <= 0 or args.batch_for_check <= 0:
        p.error("--size and --batch-for-check must be positive")
    return args


def import_deps(need_ort: bool):
    try:
        import numpy as np  # noqa: F401
        import torch  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as e:
        raise ExportError(f"missing Python package: {e.name}; install torch, numpy and onnx (pip install torch numpy onnx)") from e
    if need_ort:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise ExportError("onnxruntime is needed for the self-check: pip install onnxruntime (or onnxruntime-gpu / onnxruntime-rocm), or pass --no-check") from e


def resolve(obj, path: str, flag: str, what: str):
    """getattr along a dotted path; a miss names the flag to pass and what the object offers."""
    cur = obj
    walked = []
    for part in path.split("."):
        if not hasattr(cur, part):
            where = ".".join(walked) or type(obj).__name__
            raise ExportError(
                f"{what}: {where} has no attribute {part!r} (from {flag} {path}).\n"
                f"  {where} offers: {describe_attrs(cur)}\n"
                f"  pass {flag} with the right dotted name"
            )
        cur = getattr(cur, part)
        walked.append(part)
    return cur


def describe_attrs(obj) -> str:
    import torch

    children = []
    if isinstance(obj, torch.nn.Module):
        children = [f"{n} ({type(m).__name__})" for n, m in obj.named_children()]
    methods = [n for n in dir(type(obj)) if not n.startswith("_") and callable(getattr(type(obj), n, None))]
    if isinstance(obj, torch.nn.Module):
        base = set(dir(torch.nn.Module))
        methods = [n for n in methods if n not in base]
    parts = []
    if children:
        parts.append("submodules " + ", ".join(children))
    if methods:
        parts.append("methods " + ", ".join(methods[:40]))
    return "; ".join(parts) or "nothing public"


def load_checkpoint(path: str):
    import torch

    if not os.path.exists(path):
        raise ExportError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ExportError("reading .safetensors needs the safetensors package: pip install safetensors") from e
        return load_file(path)
    try:
        # weights_only=False: reference checkpoints may pickle config objects or the whole module.
        return torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:
        return torch.load(path, map_location="cpu")


def pick_state_dict(ckpt, key, prefix):
    import torch

    def is_state(d):
        return isinstance(d, dict) and d and all(isinstance(v, torch.Tensor) for v in d.values())

    if key is not None:
        if not isinstance(ckpt, dict) or key not in ckpt:
            keys = list(ckpt.keys()) if isinstance(ckpt, dict) else type(ckpt).__name__
            raise ExportError(f"checkpoint has no key {key!r} (top-level keys: {keys}); pass --state-key with one of them")
        state = ckpt[key]
    elif is_state(ckpt):
        state = ckpt
    else:
        state = next((ckpt[k] for k in STATE_KEYS if isinstance(ckpt, dict) and is_state(ckpt.get(k))), None)
        if state is None:
            keys = list(ckpt.keys()) if isinstance(ckpt, dict) else type(ckpt).__name__
            raise ExportError(f"cannot find the state dict in the checkpoint (top-level keys: {keys}); pass --state-key")
    out = {}
    for k, v in state.items():
        for pre in STRIP_PREFIXES:
            if k.startswith(pre):
                k = k[len(pre):]
        if prefix:
            if not k.startswith(prefix):
                continue
            k = k[len(prefix):]
        out[k] = v
    if not out:
        raise ExportError(f"no state-dict keys under prefix {prefix!r}; check --state-prefix")
    return out


def build_tokenizer(args):
    import torch

    repo = os.path.abspath(args.repo)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    ckpt = None
    if not args.no_load_state or args.factory is None:
        ckpt = load_checkpoint(args.checkpoint)
    if isinstance(ckpt, torch.nn.Module):
        print(f"checkpoint holds a whole module ({type(ckpt).__name__}); --factory is not needed")
        return ckpt
    if args.factory is None:
        raise ExportError(
            "the checkpoint holds a state dict, so the tokenizer must be built first: pass --factory MODULE:CALLABLE "
            f"(the tokenizer class or builder in the checkout at {repo}) and, if it takes arguments, --factory-kwargs JSON"
        )
    if ":" not in args.factory:
        raise ExportError(f"--factory must be MODULE:CALLABLE (e.g. tokenizer.model:Tokenizer), got {args.factory!r}")
    mod_name, attr = args.factory.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ExportError(f"cannot import {mod_name!r} from {repo} ({e}); check --repo and the module part of --factory") from e
    if not hasattr(mod, attr):
        classes = [n for n, v in vars(mod).items() if inspect.isclass(v) and issubclass(v, torch.nn.Module) and v.__module__ == mod.__name__]
        funcs = [n for n, v in vars(mod).items() if inspect.isfunction(v) and v.__module__ == mod.__name__]
        raise ExportError(
            f"module {mod_name} has no {attr!r}; its nn.Module classes: {', '.join(classes) or 'none'}; its functions: {', '.join(funcs) or 'none'}. "
            "Pass --factory MODULE:CALLABLE"
        )
    try:
        kwargs = json.loads(args.factory_kwargs.replace("{checkpoint}", args.checkpoint.replace("\\", "\\\\")))
    except json.JSONDecodeError as e:
        raise ExportError(f"--factory-kwargs is not valid JSON: {e}") from e
    model = getattr(mod, attr)(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{args.factory} returned {type(model).__name__}, not a torch.nn.Module")
    if not args.no_load_state:
        state = pick_state_dict(ckpt, args.state_key, args.state_prefix)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if (missing or unexpected) and not args.non_strict:
            raise ExportError(
                f"checkpoint does not fit {args.factory}: {len(missing)} missing keys (e.g. {missing[:5]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:5]}). Check --factory-kwargs, --state-key and "
                "--state-prefix, or pass --non-strict if only parts the encoder does not use differ (e.g. a decoder)"
            )
        if missing or unexpected:
            print(f"warning: loaded non-strict: {len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}")
    return model


def find_projection(quant, features: int, path: str):
    """The Linear(features -> 64) inside the quantizer: the attribute itself, or its only such submodule."""
    import torch

    if isinstance(quant, torch.nn.Linear):
        if quant.out_features != BITS_PER_TOKEN or quant.in_features != features:
            raise ExportError(
                f"--quantizer-attr {path} is Linear({quant.in_features} -> {quant.out_features}); expected Linear({features} -> {BITS_PER_TOKEN})"
            )
        return quant
    if not isinstance(quant, torch.nn.Module):
        raise ExportError(f"--quantizer-attr {path} is a {type(quant).__name__}, not a module; pass the Linear(768 -> 64) itself")
    found = [(n, m) for n, m in quant.named_modules() if isinstance(m, torch.nn.Linear) and m.out_features == BITS_PER_TOKEN and m.in_features == features]
    if len(found) != 1:
        linears = [f"{path}.{n} ({m.in_features}->{m.out_features})" for n, m in quant.named_modules() if isinstance(m, torch.nn.Linear)]
        raise ExportError(
            f"--quantizer-attr {path} holds {len(found)} Linear({features} -> {BITS_PER_TOKEN}) layers; Linears in it: "
            f"{', '.join(linears) or 'none'}. Pass --quantizer-attr with the dotted path of the projection"
        )
    print(f"quantizer projection: {path}.{found[0][0]} (Linear {features} -> {BITS_PER_TOKEN})")
    return found[0][1]


def make_wrapper(tokenizer, args, device, dtype):
    """Builds the export module after a dry run that settles the feature layout (static in the graph)."""
    import torch

    unit_range = args.model_input_range == "0,1"

    def first(x):
        return x[0] if isinstance(x, (tuple, list)) else x

    class BitEncoderForExport(torch.nn.Module):
        def __init__(self, tok, encode, project, channels_first):
            super().__init__()
            self.tok = tok
            self.encode = encode
            self.project = project
            self.channels_first = channels_first

        def forward(self, image):
            x = (image + 1) * 0.5 if unit_range else image
            if self.project is None:
                return first(self.encode(x)).float()
            h = first(self.encode(x))
            if self.channels_first:
                h = h.transpose(1, 2)
            # float32 logits whatever the compute dtype: a bit is logit > 0, and half rounding
            # near 0 on the server must not be what decides it.
            return self.project(h).float()

    probe = torch.rand(2, 3, args.size, args.size, device=device, dtype=dtype) * 2 - 1
    if args.logits_attr:
        fn = resolve(tokenizer, args.logits_attr, "--logits-attr", "logits")
        wrapper = BitEncoderForExport(tokenizer, fn, None, False)
        with torch.no_grad():
            out = wrapper(probe)
        want_shape(out, "--logits-attr " + args.logits_attr, args.size)
        return wrapper
    encode = resolve(tokenizer, args.encoder_attr, "--encoder-attr", "encoder")
    with torch.no_grad():
        h = first(encode((probe + 1) * 0.5 if unit_range else probe))
    if not isinstance(h, torch.Tensor) or h.dim() != 3 or TOKENS not in (h.shape[1], h.shape[2]):
        shape = list(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
        raise ExportError(
            f"--encoder-attr {args.encoder_attr} gives {shape} for a [2, 3, {args.size}, {args.size}] image; expected the "
            f"{TOKENS} latent tokens [N, {TOKENS}, 768] (or [N, 768, {TOKENS}]). Pass the attribute that produces them "
            "(before the quantizer), or --logits-attr, and check --size"
        )
    channels_first = h.shape[2] == TOKENS and h.shape[1] != TOKENS
    features = h.shape[1] if channels_first else h.shape[2]
    quant = resolve(tokenizer, args.quantizer_attr, "--quantizer-attr", "quantizer")
    project = find_projection(quant, features, args.quantizer_attr)
    wrapper = BitEncoderForExport(tokenizer, encode, project, channels_first)
    with torch.no_grad():
        want_shape(wrapper(probe), "the encoder + projection", args.size)
    print(f"encoder: {args.encoder_attr} -> [N, {TOKENS}, {features}]{' (channels first, transposed)' if channels_first else ''}")
    return wrapper


def want_shape(out, what, size):
    if list(out.shape) != [2, TOKENS, BITS_PER_TOKEN]:
        raise ExportError(f"{what} gives {list(out.shape)} for a batch of 2 at {size}x{size}; expected [2, {TOKENS}, {BITS_PER_TOKEN}]")


def export(wrapper, args, device, dtype):
    import torch

    dummy = torch.rand(2, 3, args.size, args.size, device=device, dtype=dtype) * 2 - 1
    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=args.opset, do_constant_folding=True)
    params = inspect.signature(torch.onnx.export).parameters
    if args.dynamo:
        if "dynamo" not in params:
            raise ExportError("--dynamo needs torch >= 2.5")
        kwargs.update(dynamo=True, dynamic_shapes=({0: torch.export.Dim("N", min=1, max=4096)},))
    else:
        # torch >= 2.9 defaults to the dynamo exporter; the TorchScript one handles dynamic_axes on any torch.
        if "dynamo" in params:
            kwargs["dynamo"] = False
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}}
    # nn.MultiheadAttention's inference fast path (taken under no_grad) is a fused op no exporter
    # knows; grad mode with trainable weights, and the switch where torch has it, keep it off.
    if hasattr(torch.backends, "mha") and hasattr(torch.backends.mha, "set_fastpath_enabled"):
        torch.backends.mha.set_fastpath_enabled(False)
    for prm in wrapper.parameters():
        prm.requires_grad_(True)
    t = time.time()
    try:
        torch.onnx.export(wrapper, (dummy,), args.out, **kwargs)
    except Exception as e:
        traceback.print_exc()
        raise ExportError(
            f"torch.onnx.export failed: {type(e).__name__}: {e}\n"
            "  a fused kernel (flash-attn, xformers) in the encoder cannot be exported: switch the checkout to "
            "torch.nn.functional.scaled_dot_product_attention or plain attention for the export; "
            + ("or try without --dynamo" if args.dynamo else "or try --dynamo (torch >= 2.5)")
        ) from e
    print(f"exported {args.out} in {time.time() - t:.1f}s")


def pin_contract(args):
    """Names the batch dim N and states the static dims in the file, so every runtime reports the contract."""
    import onnx

    model = onnx.load(args.out)
    g = model.graph
    inputs = [i for i in g.input if i.name not in {init.name for init in g.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in g.output]:
        raise ExportError(f"exported graph has inputs {[i.name for i in inputs]} and outputs {[o.name for o in g.output]}; expected {INPUT_NAME!r} and {OUTPUT_NAME!r}")

    def set_dims(vi, dims):
        shape = vi.type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise ExportError(f"{vi.name} has rank {len(shape.dim)} in the exported graph, expected {len(dims)}")
        for d, want in zip(shape.dim, dims):
            if isinstance(want, str):
                d.ClearField("dim_value")
                d.dim_param = want
            elif d.HasField("dim_value") and d.dim_value != want:
                raise ExportError(f"{vi.name} has dims {shape} in the exported graph, expected {dims}")
            else:
                d.ClearField("dim_param")
                d.dim_value = want

    set_dims(inputs[0], ["N", 3, args.size, args.size])
    out = next(o for o in g.output if o.name == OUTPUT_NAME)
    set_dims(out, ["N", TOKENS, BITS_PER_TOKEN])
    # Extra outputs (the TorchScript exporter can leave some) would be computed for nothing.
    for o in [o for o in g.output if o.name != OUTPUT_NAME]:
        g.output.remove(o)
    meta = {
        "bitprep.contract": f"image {'float16' if args.fp16 else 'float32'} [N,3,{args.size},{args.size}] RGB in [-1,1] -> logits float32 [N,{TOKENS},{BITS_PER_TOKEN}]; bit = logit > 0",
        "bitprep.size": str(args.size),
        "bitprep.source": os.path.basename(args.checkpoint),
    }
    for k, v in meta.items():
        entry = next((p for p in model.metadata_props if p.key == k), None) or model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, args.out)
    onnx.checker.check_model(args.out)


def check_batch(n, size, device, dtype):
    """Smooth random images plus a little noise: closer to photos than uniform noise, still seeded."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)
    coarse = torch.rand(n, 3, 8, 8, generator=gen) * 2 - 1
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.rand(n, 3, size, size, generator=gen) * 2 - 1
    # Quantised to the 256 levels bitprep sends (x/127.5 - 1).
    x = ((0.85 * smooth + 0.15 * noise).clamp(-1, 1) * 127.5 + 127.5).round() / 127.5 - 1
    return x.to(device=device, dtype=dtype)


def self_check(wrapper, args, device, dtype, ref32):
    import numpy as np
    import onnxruntime as ort
    import torch

    available = ort.get_available_providers()
    if args.providers:
        providers = [p.strip() for p in args.providers.split(",") if p.strip()]
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise ExportError(f"onnxruntime lacks providers {unknown}; available: {available}")
    else:
        preferred = ["CUDAExecutionProvider", "ROCMExecutionProvider", "MIGraphXExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in preferred if p in available] or available
    sess = ort.InferenceSession(args.out, providers=providers)
    print(f"self-check on {sess.get_providers()[0]}")

    problems = []
    ins, outs = sess.get_inputs(), sess.get_outputs()
    want_in = "tensor(float16)" if args.fp16 else "tensor(float)"
    if [i.name for i in ins] != [INPUT_NAME]:
        problems.append(f"inputs are {[i.name for i in ins]}, expected ['{INPUT_NAME}']")
    elif ins[0].type != want_in or list(ins[0].shape[1:]) != [3, args.size, args.size] or isinstance(ins[0].shape[0], int):
        problems.append(f"input {ins[0].name}: {ins[0].type} {ins[0].shape}, expected {want_in} ['N', 3, {args.size}, {args.size}]")
    out = next((o for o in outs if o.name == OUTPUT_NAME), None)
    if out is None:
        problems.append(f"outputs are {[o.name for o in outs]}, expected '{OUTPUT_NAME}'")
    elif out.type != "tensor(float)" or list(out.shape[1:]) != [TOKENS, BITS_PER_TOKEN] or isinstance(out.shape[0], int):
        problems.append(f"output {out.name}: {out.type} {out.shape}, expected tensor(float) ['N', {TOKENS}, {BITS_PER_TOKEN}]")
    if problems:
        raise ExportError("the exported model breaks the contract: " + "; ".join(problems))

    x = check_batch(args.batch_for_check, args.size, device, dtype)
    with torch.no_grad():
        want = wrapper(x).float().cpu().numpy().astype(np.float64)
    feed = x.cpu().numpy()
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: feed})[0].astype(np.float64)
    one = sess.run([OUTPUT_NAME], {INPUT_NAME: feed[-1:]})[0].astype(np.float64)
    if got.shape != want.shape:
        raise ExportError(f"onnxruntime gives {got.shape}, torch {want.shape}")
    diff = np.abs(got - want)
    agree = float(np.mean((got > 0) == (want > 0)))
    batch_diff = float(np.abs(one[0] - got[-1]).max())
    ones = float(np.mean(got > 0))
    print(
        f"batch {args.batch_for_check}: max |onnx - torch| {diff.max():.3g}, mean {diff.mean():.3g}; "
        f"bit agreement {agree:.6f}; ones {ones:.3f}; batch-1 vs batched max diff {batch_diff:.3g}"
    )
    if ref32 is not None:
        agree32 = float(np.mean((got > 0) == (ref32 > 0)))
        print(f"fp16 ONNX vs fp32 torch: bit agreement {agree32:.6f}, max diff {np.abs(got - ref32).max():.3g}")
        if agree32 < 0.99:
            print("warning: float16 changes more than 1% of the bits; prefer the float32 export for training data")
    max_diff = args.max_abs_diff if args.max_abs_diff is not None else (5e-2 if args.fp16 else 1e-3)
    min_agree = args.min_bit_agreement if args.min_bit_agreement is not None else (0.99 if args.fp16 else 0.999)
    failures = []
    if not diff.max() <= max_diff:
        failures.append(f"max abs diff {diff.max():.3g} > {max_diff:g}")
    if agree < min_agree:
        failures.append(f"bit agreement {agree:.6f} < {min_agree:g}")
    if not batch_diff <= max_diff:
        failures.append(f"batch of 1 differs from the batched run by {batch_diff:.3g}")
    if failures:
        raise ExportError(f"self-check failed ({'; '.join(failures)}); {args.out} was written but should not be used")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import_deps(need_ort=not args.no_check)
        import numpy as np
        import torch

        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tokenizer = build_tokenizer(args).to(device).eval()
        wrapper = make_wrapper(tokenizer, args, device, torch.float32)
        ref32 = None
        dtype = torch.float32
        if args.fp16:
            if not args.no_check:
                with torch.no_grad():
                    ref32 = wrapper(check_batch(args.batch_for_check, args.size, device, torch.float32)).cpu().numpy().astype(np.float64)
            dtype = torch.float16
            wrapper = wrapper.half()
            try:
                with torch.no_grad():
                    want_shape(wrapper(torch.zeros(2, 3, args.size, args.size, device=device, dtype=dtype)), "the float16 encoder", args.size)
            except RuntimeError as e:
                raise ExportError(f"the encoder does not run in float16 on {device} ({e}); use --device cuda (a GPU) for --fp16") from e
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        export(wrapper, args, device, dtype)
        pin_contract(args)
        if args.no_check:
            print("self-check skipped (--no-check)")
        else:
            self_check(wrapper, args, device, dtype, ref32)
        print(f"ok: {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB): {INPUT_NAME} [N,3,{args.size},{args.size}] -> {OUTPUT_NAME} [N,{TOKENS},{BITS_PER_TOKEN}]")
        return 0
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
