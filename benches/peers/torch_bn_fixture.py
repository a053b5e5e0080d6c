# Writes the PyTorch fixture behind crates/latentlab-model/tests/pytorch_bn.rs:
# a small convolutional VAE on 28×28 digits with batch normalisation in every
# form latentlab has (BatchNorm2d with and without γ/β and with another
# momentum, BatchNorm1d), after 10 Adam steps on mnist-10k digits, saved with
# safetensors.torch.save_file(model.state_dict()) (no latentlab metadata;
# num_batches_tracked is int64, as PyTorch keeps it), with:
#   arch.json               the stacks in latentlab's layer specification
#   x.npy                   8 test digits (8 × 784)
#   mu.npy, logvar.npy      encode(x) in eval mode (running statistics)
#   logits.npy              decoder(mu) in eval mode
#   eps.npy, loss.npy       ε (8 × 4) and mean(rec + 4·KL) in train mode
#   grads.safetensors       its gradients (batch statistics)
#   buffers.safetensors     the running statistics after that train-mode pass
# Usage: python3 benches/peers/torch_bn_fixture.py OUT_DIR
import json, os, sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import save_file
from torch_common import mnist

class BnVAE(nn.Module):
    def __init__(s, d=4):
        super().__init__()
        s.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 4, 2, 1), nn.BatchNorm2d(16, momentum=0.2, affine=False), nn.ReLU(),
            nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32, eps=1e-3), nn.ReLU())
        s.fc_mu = nn.Linear(32, d); s.fc_logvar = nn.Linear(32, d)
        s.decoder = nn.Sequential(
            nn.Linear(d, 784), nn.ReLU(), nn.Unflatten(1, (16, 7, 7)),
            nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.ConvTranspose2d(8, 1, 4, 2, 1))
    def encode(s, x):
        h = s.encoder(x.view(-1, 1, 28, 28)); return s.fc_mu(h), s.fc_logvar(h)
    def terms(s, x, eps):
        mu, lv = s.encode(x)
        z = mu + torch.exp(0.5 * lv) * eps
        logits = s.decoder(z).flatten(1)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(1)
        return rec, -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1)

conv = lambda out: {"layer": "conv2d", "out": out, "kernel": 4, "stride": 2, "padding": 1}
convt = lambda out: {"layer": "conv_transpose2d", "out": out, "kernel": 4, "stride": 2, "padding": 1}
relu = {"layer": "activation", "kind": "relu"}
ARCH = {
    "encoder": [conv(8), {"layer": "batch_norm2d"}, relu,
                conv(16), {"layer": "batch_norm2d", "momentum": 0.2, "affine": False}, relu,
                {"layer": "flatten"}, {"layer": "linear", "out": 32}, {"layer": "batch_norm1d", "eps": 1e-3}, relu],
    "decoder": [{"layer": "linear", "out": 784}, relu,
                {"layer": "unflatten", "channels": 16, "height": 7, "width": 7},
                convt(8), {"layer": "batch_norm2d"}, relu, convt(1)],
}

torch.manual_seed(0); torch.set_num_threads(2)
xtr, xte = mnist('train')[:320], mnist('test')[:8]
m = BnVAE(); opt = torch.optim.Adam(m.parameters(), 1e-3)
m.train()
for i in range(0, 320, 32):
    rec, kl = m.terms(xtr[i:i + 32], torch.randn(32, 4))
    opt.zero_grad(); (rec + 4 * kl).mean().backward(); opt.step()
out = sys.argv[1] if len(sys.argv) > 1 else '.'
os.makedirs(out, exist_ok=True)
save_file(m.state_dict(), os.path.join(out, 'model.safetensors'))
with open(os.path.join(out, 'arch.json'), 'w') as f:
    json.dump(ARCH, f, indent=1)
m.eval()
with torch.no_grad():
    mu, lv = m.encode(xte); logits = m.decoder(mu).flatten(1)
m.train()
eps = torch.randn(8, 4)
m.zero_grad()
rec, kl = m.terms(xte, eps)
loss = (rec + 4 * kl).mean()
loss.backward()
save_file({k: p.grad.contiguous() for k, p in m.named_parameters()}, os.path.join(out, 'grads.safetensors'))
save_file({k: b.contiguous() for k, b in m.named_buffers()}, os.path.join(out, 'buffers.safetensors'))
for name, t in [('x', xte), ('eps', eps), ('mu', mu), ('logvar', lv), ('logits', logits),
                ('loss', loss.detach().view(1, 1))]:
    np.save(os.path.join(out, name + '.npy'), t.numpy().astype(np.float32))
print(f"torch {torch.__version__}: wrote {out}")
