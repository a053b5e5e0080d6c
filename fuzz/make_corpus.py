"""Writes the small seed corpus of every fuzz target (run once; the files are
kept in the repository; the image seeds need Pillow). usage: python3 fuzz/make_corpus.py"""
import gzip
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    with open(os.path.join(HERE, "corpus", target, name), "wb") as f:
        f.write(data)


def npy(a):
    import io
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def safetensors(tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        dt = {"float32": "F32", "float64": "F64", "int64": "I64"}[str(a.dtype)]
        raw = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def idx(a, magic_type=0x08):
    head = struct.pack(">BBBB", 0, 0, magic_type, a.ndim) + b"".join(struct.pack(">I", d) for d in a.shape)
    return head + a.astype(">u1").tobytes()


rng = np.random.default_rng(0)
img = (rng.random((3, 4, 4)) * 255).astype(np.uint8)
put("idx", "images.idx", idx(img))
put("idx", "labels.idx", idx(np.array([1, 2, 3], dtype=np.uint8)))
put("idx", "images.idx.gz", gzip.compress(idx(img)))
put("npy", "f32.npy", npy(rng.random((3, 2)).astype(np.float32)))
put("npy", "f64.npy", npy(rng.random(5)))
put("npy", "i64.npy", npy(np.arange(4, dtype=np.int64)))
put("npy", "u8.npy", npy(np.arange(6, dtype=np.uint8).reshape(2, 3)))
put("latents", "mu.npy", npy(rng.standard_normal((6, 3))))
lat = {"mu": rng.standard_normal((5, 2)).astype(np.float32), "logvar": np.zeros((5, 2), np.float32)}
put("latents", "latents.safetensors", safetensors(lat))
put("attributes", "attrs.safetensors", safetensors({"smile": np.array([1, 0, 0, 0], np.float32), "class:3->8": np.array([0, 0.6, 0.8, 0], np.float32)}, {"format": "latentlab.attributes"}))
shapes = {"encoder.0.weight": (3, 4), "encoder.0.bias": (3,), "fc_mu.weight": (2, 3), "fc_mu.bias": (2,),
          "fc_logvar.weight": (2, 3), "fc_logvar.bias": (2,), "decoder.0.weight": (3, 2), "decoder.0.bias": (3,),
          "decoder.2.weight": (4, 3), "decoder.2.bias": (4,)}
params = {k: (rng.standard_normal(s) * 0.1).astype(np.float32) for k, s in shapes.items()}
put("checkpoint", "pytorch.safetensors", safetensors(params))
cfg = {"kind": "vae", "input_dim": 4, "hidden": [3], "latent": 2, "activation": {"kind": "relu"},
       "likelihood": {"kind": "bernoulli"}, "image_shape": [2, 2]}
put("checkpoint", "latentlab.safetensors", safetensors(params, {"format": "pt", "latentlab.config": json.dumps(cfg)}))
train = {"config": {"epochs": 2, "batch_size": 8, "lr": 0.001, "weight_decay": 0.0, "seed": 0, "beta": 1.0,
                    "kl_schedule": {"kind": "constant"}, "free_bits": None, "capacity": None, "clip_grad_norm": None},
         "step": 3, "epoch_rec": 0.0, "epoch_kl": 0.0, "epoch_images": 0, "epoch_seconds": 0.0, "history": []}
state = dict(params)
for k, v in params.items():
    state["adam.m." + k] = np.zeros_like(v)
    state["adam.v." + k] = np.zeros_like(v)
put("checkpoint", "state.safetensors.resume", safetensors(state, {"format": "pt", "latentlab.config": json.dumps(cfg), "latentlab.train": json.dumps(train)}))

# Layer specifications (--arch FILE.json): conv64 in colour, a stack with
# every batch-norm form and odd convolutions, an MLP, and one that fails.
os.makedirs(os.path.join(HERE, "corpus", "arch"), exist_ok=True)
conv = lambda o: {"layer": "conv2d", "out": o, "kernel": 4, "stride": 2, "padding": 1}
convt = lambda o: {"layer": "conv_transpose2d", "out": o, "kernel": 4, "stride": 2, "padding": 1}
relu = {"layer": "activation", "kind": "relu"}
conv64 = {"encoder": [conv(32), relu, conv(32), relu, conv(64), relu, conv(64), relu,
                      {"layer": "flatten"}, {"layer": "linear", "out": 256}, relu],
          "decoder": [{"layer": "linear", "out": 256}, relu, {"layer": "linear", "out": 1024}, relu,
                      {"layer": "unflatten", "channels": 64, "height": 4, "width": 4},
                      convt(64), relu, convt(32), relu, convt(32), relu, convt(3)]}
bn = {"encoder": [conv(8), {"layer": "batch_norm2d"}, {"layer": "activation", "kind": "leaky_relu", "slope": 0.2},
                  {"layer": "conv2d", "out": 4, "kernel": [3, 2], "dilation": [1, 2], "padding": [1, 0]},
                  {"layer": "batch_norm2d", "affine": False, "momentum": 0.3},
                  {"layer": "flatten"}, {"layer": "linear", "out": 16, "bias": False},
                  {"layer": "batch_norm1d", "eps": 1e-3}],
      "decoder": [{"layer": "linear", "out": 196}, {"layer": "activation", "kind": "elu", "alpha": 1.0},
                  {"layer": "unflatten", "channels": 4, "height": 7, "width": 7},
                  {"layer": "conv_transpose2d", "out": 2, "kernel": 3, "stride": 2, "padding": 1,
                   "output_padding": 1},
                  {"layer": "activation", "kind": "tanh"}, convt(1)]}
mlp = {"encoder": [{"layer": "flatten"}, {"layer": "linear", "out": 64}, {"layer": "activation", "kind": "softplus"}],
       "decoder": [{"layer": "linear", "out": 784}]}
for name, v in [("conv64.json", conv64), ("bn.json", bn), ("mlp.json", mlp)]:
    put("arch", name, json.dumps(v).encode())
put("arch", "bad.json", b'{"encoder": [{"layer": "conv2d", "out": 99999999, "kernel": 0}], "decoder": []}')

# image: PNG (grey, RGB, RGBA, 16-bit) and JPEG (grey, colour), small.
from PIL import Image
import io as _io


def encoded(img, fmt, **kw):
    b = _io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


ramp = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
put("image", "grey.png", encoded(Image.fromarray(ramp, "L"), "PNG"))
colour = np.stack([ramp, ramp[::-1], 255 - ramp], -1)
put("image", "rgb.png", encoded(Image.fromarray(colour, "RGB"), "PNG"))
put("image", "rgba.png", encoded(Image.fromarray(np.dstack([colour, ramp]), "RGBA"), "PNG"))
put("image", "grey16.png", encoded(Image.fromarray(ramp.astype(np.uint16) * 257), "PNG"))
put("image", "rgb.jpg", encoded(Image.fromarray(colour, "RGB"), "JPEG", quality=90))
put("image", "grey.jpg", encoded(Image.fromarray(ramp, "L"), "JPEG", quality=90))

# onnx: tiny graphs of the forms --encoder and --decoder take (an MLP and a
# conv encoder with BatchNorm, a decoder) and one with an operator tract
# lacks; small, so that the fuzzer mutates structure rather than weights.
from onnx import helper, numpy_helper, TensorProto


def model(nodes, inputs, outputs, weights, opset=17):
    g = helper.make_graph(nodes, "fuzz", inputs, outputs,
                          [numpy_helper.from_array(w, n) for n, w in weights.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


f32 = lambda *s: np.linspace(-1, 1, int(np.prod(s)), dtype=np.float32).reshape(s)
io = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
heads = [helper.make_node("Gemm", ["h", "wm", "bm"], ["mu"], transB=1),
         helper.make_node("Gemm", ["h", "wl", "bl"], ["logvar"], transB=1)]
head_w = {"wm": f32(2, 4), "bm": f32(2), "wl": f32(2, 4), "bl": f32(2)}
put("onnx", "mlp_encoder.onnx", model(
    [helper.make_node("Gemm", ["x", "w", "b"], ["a"], transB=1), helper.make_node("Relu", ["a"], ["h"])] + heads,
    [io("x", ["batch", 16])], [io("mu", ["batch", 2]), io("logvar", ["batch", 2])],
    {"w": f32(4, 16), "b": f32(4), **head_w}))
put("onnx", "conv_encoder.onnx", model(
    [helper.make_node("Conv", ["x", "k", "kb"], ["c"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
     helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], epsilon=1e-5),
     helper.make_node("Relu", ["n"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
     helper.make_node("Gemm", ["f", "w", "b"], ["h"], transB=1)] + heads,
    [io("x", ["batch", 1, 8, 8])], [io("mu", ["batch", 2]), io("logvar", ["batch", 2])],
    {"k": f32(2, 1, 3, 3), "kb": f32(2), "g": f32(2) + 2, "be": f32(2), "m": f32(2), "v": f32(2) + 2,
     "w": f32(4, 32), "b": f32(4), **head_w}))
put("onnx", "decoder.onnx", model(
    [helper.make_node("Gemm", ["z", "w", "b"], ["y"], transB=1)],
    [io("z", ["batch", 2])], [io("y", ["batch", 16])], {"w": f32(16, 2), "b": f32(16)}))
put("onnx", "unsupported.onnx", model(
    [helper.make_node("Col2Im", ["x", "shape", "block"], ["y"])],
    [io("x", ["batch", 4, 16])], [io("y", ["batch", 1, 8, 8])],
    {"shape": np.array([8, 8], np.int64), "block": np.array([2, 2], np.int64)}, opset=18))
