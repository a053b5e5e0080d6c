# Writes the ONNX fixture behind crates/latentlab-onnx/tests/pytorch_onnx.rs
# and the ONNX rows of the CLI tests: a PyTorch conv VAE with BatchNorm
# (encoder Conv2d-BatchNorm2d-ReLU blocks, a Linear, heads mu and logvar;
# decoder a Linear, ConvTranspose2d-BatchNorm2d-ReLU, ConvTranspose2d to
# Bernoulli logits), trained for 60 Adam steps on mnist-10k digits, then
# exported in eval mode with torch.onnx.export and a dynamic batch axis:
#   encoder.onnx          x (batch × 1 × 28 × 28) -> mu, logvar (batch × 8)
#   decoder.onnx          z (batch × 8) -> logits (batch × 1 × 28 × 28)
#   encoder_b1.onnx       the same encoder exported without a dynamic axis,
#                         on flat rows: x (1 × 784) -> mu, logvar (1 × 8)
#   unsupported.onnx      a graph with Col2Im, an ONNX operator tract lacks
#   decoder_d4.onnx       a decoder of 4 latents (Linear 4 -> 784), which
#                         does not fit encoder.onnx
#   x.npy                 8 test digits (8 × 784)
#   mu.npy, logvar.npy    encode(x) in eval mode
#   logits.npy            decode(mu) in eval mode (8 × 784)
# The BatchNormalization nodes are kept in the graphs (do_constant_folding
# off), so the runtime computes them rather than weights PyTorch folded.
# Usage: python3 benches/peers/torch_onnx_fixture.py OUT_DIR
import os, sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
import onnx
from onnx import helper, TensorProto
from torch_common import mnist

D = 8


def block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 4, 2, 1), nn.BatchNorm2d(o), nn.ReLU())


class Encoder(nn.Module):
    def __init__(s):
        super().__init__()
        s.features = nn.Sequential(block(1, 8), block(8, 16))
        s.fc = nn.Linear(16 * 7 * 7, 64)
        s.mu = nn.Linear(64, D)
        s.logvar = nn.Linear(64, D)

    def forward(s, x):
        h = F.relu(s.fc(s.features(x).flatten(1)))
        return s.mu(h), s.logvar(h)


class Decoder(nn.Module):
    def __init__(s):
        super().__init__()
        s.project = nn.Linear(D, 16 * 7 * 7)
        s.up = nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.ConvTranspose2d(8, 1, 4, 2, 1))

    def forward(s, z):
        return s.up(F.relu(s.project(z)).view(-1, 16, 7, 7))


class FlatEncoder(nn.Module):
    """The encoder on flat rows, as an MLP-minded export would take them."""
    def __init__(s, enc):
        super().__init__()
        s.enc = enc

    def forward(s, x):
        return s.enc(x.view(-1, 1, 28, 28))


def export(m, arg, path, inputs, outputs, dynamic):
    axes = {n: {0: 'batch'} for n in inputs + outputs} if dynamic else None
    torch.onnx.export(m, (arg,), path, input_names=inputs, output_names=outputs,
                      dynamic_axes=axes, opset_version=17, do_constant_folding=False,
                      dynamo=False)


torch.manual_seed(0); torch.set_num_threads(2)
xtr, xte = mnist('train')[:1920], mnist('test')[:8]
enc, dec = Encoder(), Decoder()
opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), 2e-3)
enc.train(); dec.train()
for i in range(0, 1920, 32):
    x = xtr[i:i + 32]
    mu, lv = enc(x.view(-1, 1, 28, 28))
    z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
    rec = F.binary_cross_entropy_with_logits(dec(z).flatten(1), x, reduction='none').sum(1)
    loss = (rec - 0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1)).mean()
    opt.zero_grad(); loss.backward(); opt.step()
enc.eval(); dec.eval()

out = sys.argv[1] if len(sys.argv) > 1 else '.'
os.makedirs(out, exist_ok=True)
p = lambda name: os.path.join(out, name)
export(enc, xte.view(-1, 1, 28, 28), p('encoder.onnx'), ['x'], ['mu', 'logvar'], True)
export(dec, torch.zeros(2, D), p('decoder.onnx'), ['z'], ['logits'], True)
export(FlatEncoder(enc).eval(), xte[:1], p('encoder_b1.onnx'), ['x'], ['mu', 'logvar'], False)
export(nn.Linear(4, 784).eval(), torch.zeros(2, 4), p('decoder_d4.onnx'), ['z'], ['logits'], True)
for f in ['encoder.onnx', 'decoder.onnx']:
    ops = {n.op_type for n in onnx.load(p(f)).graph.node}
    assert 'BatchNormalization' in ops, f"{f}: BatchNorm was folded away ({sorted(ops)})"

# Col2Im (opset 18) is a real ONNX operator that tract does not implement.
g = helper.make_graph(
    [helper.make_node('Col2Im', ['x', 'shape', 'block'], ['y'])], 'unsupported',
    [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['batch', 4, 196])],
    [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['batch', 1, 28, 28])],
    [helper.make_tensor('shape', TensorProto.INT64, [2], [28, 28]),
     helper.make_tensor('block', TensorProto.INT64, [2], [2, 2])])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 18)]), p('unsupported.onnx'))

# torch.onnx.export restores each module's training flag when it is done:
# every module exported above was in eval mode, so these are eval outputs.
assert not enc.training and not dec.training
with torch.no_grad():
    mu, lv = enc(xte.view(-1, 1, 28, 28)); logits = dec(mu).flatten(1)
for name, t in [('x', xte), ('mu', mu), ('logvar', lv), ('logits', logits)]:
    np.save(p(name + '.npy'), t.numpy().astype(np.float32))
print(f"torch {torch.__version__}, onnx {onnx.__version__}: wrote {out}")
