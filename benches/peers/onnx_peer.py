# The ONNX peer of `cargo xtask onnx`: onnxruntime's CPU provider encodes
# the 10,000 mnist-10k digits (train then test, as `latentlab encode
# --split all` reads them) with the fixture encoder, in batches of 256,
# with PEER_THREADS intra-op threads; prints one JSON line per round with
# images/s over the encode calls alone (the session is built before).
# Usage: python3 benches/peers/onnx_peer.py ENCODER.onnx ROUNDS
import gzip, json, os, sys, time
import numpy as np
import onnxruntime as ort

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'crates', 'latentlab-data', 'data', 'mnist-10k')


def images(name):
    b = gzip.open(os.path.join(DATA, name)).read()
    return np.frombuffer(b, np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0


x = np.concatenate([images('train-images-idx3-ubyte.gz'), images('t10k-images-idx3-ubyte.gz')])
threads = int(os.environ.get('PEER_THREADS', '1'))
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], opts, providers=['CPUExecutionProvider'])
name = s.get_inputs()[0].name
s.run(None, {name: x[:256]})  # warm-up
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    for i in range(0, len(x), 256):
        s.run(None, {name: x[i:i + 256]})
    dt = time.perf_counter() - t
    print(json.dumps({"onnxruntime": ort.__version__, "threads": threads, "images": len(x), "images_per_s": len(x) / dt}))
