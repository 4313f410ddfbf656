#!/usr/bin/env python3
"""Serve the BIT encoder with PyTorch over the KServe v2 protocol, the way the reference runs it.

The Instella-T2I training encodes images with the tokenizer in PyTorch, in eval mode, in bfloat16
(scripts/train_diff.py). This server runs that same module behind the protocol bitprep's
pre-encode speaks (the KServe v2 / Open Inference Protocol over HTTP, with the binary tensor
extension), so a latent dataset can be encoded exactly as training would encode it, on CUDA or on
ROCm (PyTorch ROCm calls its GPUs "cuda"), with no ONNX export and no ONNX Runtime provider.

  model "bit_encoder" (--name)
    input  "image"   FP32 [N, 3, S, S] (--input-dtype FP16 to receive half precision), RGB, NCHW,
                     values x/127.5 - 1; N dynamic, S = --size (512)
    output "logits"  FP32 [N, 128, 64] whatever the compute dtype: bit = logit > 0

  Compute: --dtype bfloat16 (default, as the reference trains), float16 or float32; the module's
  weights and the input are cast to it, the logits come back as float32.
  Batching: requests wait up to --max-wait-ms for others and run together, up to --max-batch
  images per forward pass (a larger request runs in several). One process per GPU: start one per
  device (--device cuda:i --port 8000+i) and list every endpoint under encoder.model.kserve.

Endpoints: GET /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready,
/v2/models/NAME/stats (Triton's counters: inference_count, execution_count); POST
/v2/models/NAME/infer (JSON, or binary with the Inference-Header-Content-Length header). Errors
are JSON {"error": "..."}: 400 for a malformed request, 404 for another model, 413 for a body over
--max-body-mb.

The tokenizer is located exactly as tools/export_bit_encoder.py locates it (the same arguments:
--repo, --factory, --checkpoint, --encoder-attr, --quantizer-attr or --logits-attr, ...), e.g.

  python tools/serve_bit_encoder.py --repo ~/Instella-T2I --factory tokenizer.model:Tokenizer \\
      --checkpoint ckpts/tokenizer.pth --device cuda:0 --port 8000

It prints "serving NAME at http://HOST:PORT/v2/models/NAME" once the model has run a warm-up batch.
Needs python >= 3.9, torch >= 1.13 and numpy.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_bit_encoder as bit  # noqa: E402  (the tokenizer's location and its logits wrapper)

HEADER_LENGTH = "Inference-Header-Content-Length"
WIRE_DTYPES = {"FP32": ("float32", 4), "FP16": ("float16", 2)}


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Serve the BIT encoder (PyTorch) over KServe v2 for bitprep pre-encode.", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    bit.add_model_arguments(p)
    p.add_argument("--name", default="bit_encoder", help="model name in the URL (default bit_encoder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for the cluster)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16", help="compute dtype (default bfloat16, as the reference trains)")
    p.add_argument("--input-dtype", choices=sorted(WIRE_DTYPES), default="FP32", help="datatype the input is declared with (default FP32)")
    p.add_argument("--max-batch", type=int, default=32, help="most images per forward pass (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to batch with (default 5)")
    p.add_argument("--max-body-mb", type=float, default=1024.0, help="largest request body, MiB (default 1024); larger ones get 413")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.max_batch < 1 or args.size < 1 or args.max_wait_ms < 0:
        p.error("--max-batch and --size must be positive, --max-wait-ms not negative")
    return args


class Encoder:
    """The tokenizer's logits on one device, in batches: one thread runs the model, requests queue for it."""

    def __init__(self, wrapper, device, dtype, max_batch: int, max_wait_s: float):
        import torch

        self.torch = torch
        self.model = wrapper
        self.device = device
        self.dtype = dtype
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.jobs: "queue.Queue" = queue.Queue()
        self.inference_count = 0
        self.execution_count = 0
        self.compute_ns = 0
        threading.Thread(target=self._loop, name="encoder", daemon=True).start()

    def run(self, images):
        """Logits float32 [n, 128, 64] for images [n, 3, S, S] (numpy); blocks until done."""
        job = {"x": images, "done": threading.Event(), "out": None, "error": None}
        self.jobs.put(job)
        job["done"].wait()
        if job["error"] is not None:
            raise job["error"]
        return job["out"]

    def forward(self, x):
        torch = self.torch
        with torch.inference_mode():
            t = torch.from_numpy(x).to(device=self.device, dtype=self.dtype)
            return self.model(t).float().cpu().numpy()

    def _loop(self):
        import numpy as np

        while True:
            jobs = [self.jobs.get()]
            n = len(jobs[0]["x"])
            deadline = time.monotonic() + self.max_wait_s
            # Gather whole requests while they fit in one pass and the oldest has waited less than max_wait.
            while n < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    nxt = self.jobs.get(timeout=left) if left > 0 else self.jobs.get_nowait()
                except queue.Empty:
                    break
                jobs.append(nxt)
                n += len(nxt["x"])
            try:
                x = np.concatenate([j["x"] for j in jobs]) if len(jobs) > 1 else jobs[0]["x"]
                t0 = time.monotonic_ns()
                outs = [self.forward(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
                self.compute_ns += time.monotonic_ns() - t0
                self.execution_count += len(outs)
                self.inference_count += len(x)
                y = np.concatenate(outs) if len(outs) > 1 else outs[0]
                at = 0
                for j in jobs:
                    j["out"] = y[at:at + len(j["x"])]
                    at += len(j["x"])
            except Exception as e:  # noqa: BLE001 (the request that caused it gets the error)
                for j in jobs:
                    j["error"] = e
            for j in jobs:
                j["done"].set()


def decode_request(body: bytes, header_length, args):
    """The "image" input as float32/float16 numpy [n, 3, S, S], and which outputs want binary data."""
    import numpy as np

    n = len(body)
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise RequestError(400, f"{HEADER_LENGTH} {header_length!r} is not a number")
        if n < 0 or n > len(body):
            raise RequestError(400, f"{HEADER_LENGTH} {n} does not fit a {len(body)}-byte body")
    try:
        head = json.loads(body[:n])
    except ValueError as e:
        raise RequestError(400, f"body is not valid JSON{'' if n < len(body) else ' (binary data needs the ' + HEADER_LENGTH + ' header)'}: {e}")
    inputs = head.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, "request has no inputs")
    binary = body[n:]
    offset = 0
    image = None
    for t in inputs:
        name, dtype, shape = t.get("name"), t.get("datatype"), t.get("shape")
        size = (t.get("parameters") or {}).get("binary_data_size")
        raw = None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise RequestError(400, f'tensor "{name}": binary_data_size {size} runs past the {len(binary)} binary bytes')
            raw = binary[offset:offset + size]
            offset += size
        if name != bit.INPUT_NAME:
            raise RequestError(400, f'unknown input tensor "{name}" (the model takes "{bit.INPUT_NAME}")')
        if dtype != args.input_dtype:
            raise RequestError(400, f'input "{name}" is {dtype}; this server declares {args.input_dtype}')
        if not (isinstance(shape, list) and len(shape) == 4 and shape[1:] == [3, args.size, args.size] and isinstance(shape[0], int) and shape[0] >= 1):
            raise RequestError(400, f'input "{name}" has shape {shape}; expected [N, 3, {args.size}, {args.size}]')
        np_dtype, width = WIRE_DTYPES[dtype]
        count = shape[0] * 3 * args.size * args.size
        if raw is not None:
            if len(raw) != count * width:
                raise RequestError(400, f'input "{name}": {len(raw)} bytes for shape {shape} ({count * width} expected)')
            arr = np.frombuffer(raw, dtype="<" + ("f4" if width == 4 else "f2"))
        else:
            data = t.get("data")
            if data is None:
                raise RequestError(400, f'input "{name}" has neither data nor binary_data_size')
            arr = np.asarray(data, dtype=np_dtype).reshape(-1)
            if arr.size != count:
                raise RequestError(400, f'input "{name}": {arr.size} values for shape {shape} ({count} expected)')
        image = arr.astype(np.float32 if width == 4 else np.float16, copy=False).reshape(shape)
    if offset != len(binary):
        raise RequestError(400, f"{len(binary) - offset} binary bytes follow the header that no tensor's binary_data_size claims")
    wanted = head.get("outputs")
    default_binary = bool((head.get("parameters") or {}).get("binary_data_output", False))
    if wanted is None:
        return image, default_binary, head.get("id")
    names = [o.get("name") for o in wanted]
    if any(nm != bit.OUTPUT_NAME for nm in names):
        raise RequestError(400, f'unknown output tensor(s) {[nm for nm in names if nm != bit.OUTPUT_NAME]} (the model gives "{bit.OUTPUT_NAME}")')
    o = wanted[0] if wanted else {}
    return image, bool((o.get("parameters") or {}).get("binary_data", default_binary)), head.get("id")


def encode_response(name: str, logits, binary: bool, request_id):
    """(body, headers) of an infer response with the logits, binary or JSON."""
    out = {"name": bit.OUTPUT_NAME, "datatype": "FP32", "shape": list(logits.shape)}
    head = {"model_name": name, "model_version": "1", "outputs": [out]}
    if request_id is not None:
        head["id"] = request_id
    if not binary:
        out["data"] = logits.reshape(-1).tolist()
        return json.dumps(head).encode(), {"Content-Type": "application/json"}
    data = logits.astype("<f4", copy=False).tobytes()
    out["parameters"] = {"binary_data_size": len(data)}
    h = json.dumps(head).encode()
    return h + data, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(h))}


def make_handler(args, encoder: Encoder):
    metadata = {
        "name": args.name,
        "versions": ["1"],
        "platform": "pytorch",
        "inputs": [{"name": bit.INPUT_NAME, "datatype": args.input_dtype, "shape": [-1, 3, args.size, args.size]}],
        "outputs": [{"name": bit.OUTPUT_NAME, "datatype": "FP32", "shape": [-1, bit.TOKENS, bit.BITS_PER_TOKEN]}],
    }
    model_path = f"/v2/models/{args.name}"
    max_body = int(args.max_body_mb * 2**20)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # one line per error only; a request log at thousands a second is noise
            pass

        def send(self, status: int, body: bytes, headers=None):
            self.send_response(status)
            for k, v in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: int, obj):
            self.send(status, json.dumps(obj).encode())

        def do_GET(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            if path in ("/v2/health/live", "/v2/health/ready", f"{model_path}/ready"):
                return self.send_json(200, {})
            if path == "/v2":
                return self.send_json(200, {"name": "serve_bit_encoder", "version": "1", "extensions": ["binary_tensor_data"]})
            if path == model_path:
                return self.send_json(200, metadata)
            if path == f"{model_path}/stats":
                return self.send_json(200, {"model_stats": [{"name": args.name, "version": "1", "inference_count": encoder.inference_count, "execution_count": encoder.execution_count, "inference_stats": {"compute_infer": {"ns": encoder.compute_ns}}}]})
            if path.startswith("/v2/models/"):
                return self.send_json(404, {"error": f"unknown model; this server serves {args.name}"})
            return self.send_json(404, {"error": f"no route {self.path}"})

        def do_POST(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            if path != f"{model_path}/infer":
                self.rfile.read(length)
                return self.send_json(404, {"error": f"unknown model or route {self.path}; this server serves {model_path}/infer"})
            if length > max_body:
                # The body is not read: close the connection after answering.
                self.close_connection = True
                return self.send_json(413, {"error": f"request body of {length} bytes exceeds --max-body-mb {args.max_body_mb}"})
            body = self.rfile.read(length)
            try:
                image, binary, request_id = decode_request(body, self.headers.get(HEADER_LENGTH), args)
                logits = encoder.run(image)
                out, headers = encode_response(args.name, logits, binary, request_id)
                self.send(200, out, headers)
            except RequestError as e:
                self.send_json(e.status, {"error": str(e)})
            except Exception as e:  # noqa: BLE001
                print(f"serve_bit_encoder: infer failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                self.send_json(500, {"error": f"{type(e).__name__}: {e}"})

    return Handler


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print(f"serve_bit_encoder: missing Python package: {e.name}; install torch and numpy", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tokenizer = bit.build_tokenizer(args).to(device).eval()
        wrapper = bit.make_wrapper(tokenizer, args, device, torch.float32)
    except bit.ExportError as e:
        print(f"serve_bit_encoder: {e}", file=sys.stderr)
        return 2
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[args.dtype]
    wrapper = wrapper.to(dtype).eval()
    encoder = Encoder(wrapper, device, dtype, args.max_batch, args.max_wait_ms / 1000)
    # A warm-up pass: kernels chosen and memory allocated before the first client waits on them.
    warm = (np.random.default_rng(0).random((min(2, args.max_batch), 3, args.size, args.size), dtype=np.float32) * 2 - 1)
    shape = list(encoder.forward(warm.astype(WIRE_DTYPES[args.input_dtype][0])).shape)
    if shape != [len(warm), bit.TOKENS, bit.BITS_PER_TOKEN]:
        print(f"serve_bit_encoder: the model gives {shape} for {len(warm)} images; expected [{len(warm)}, {bit.TOKENS}, {bit.BITS_PER_TOKEN}]", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args, encoder))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"serving {args.name} at http://{host}:{port}/v2/models/{args.name} ({device}, {args.dtype}, input {args.input_dtype} [N, 3, {args.size}, {args.size}], batches of up to {args.max_batch})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    print(f"served {encoder.inference_count} images in {encoder.execution_count} passes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
