# Writes the PyTorch fixture behind crates/latentlab-model/tests/pytorch_nested.rs:
# a VAE laid out as real-world code often is, not as one flat nn.Sequential:
# its encoder an nn.Sequential of nn.Sequential blocks (Conv2d, BatchNorm2d,
# ReLU) under an attribute `features`, then `fc`; heads `mu` and `logvar`;
# a decoder module with a `project` Linear and `blocks` of ConvTranspose2d
# and BatchNorm2d. Saved after 10 Adam steps on mnist-10k digits with
# safetensors.torch.save_file(model.state_dict()), with:
#   arch.json             latentlab's layer specification, each layer with
#                         tensors naming its module ("name"), and "heads"
#   x.npy                 8 test digits (8 × 784)
#   mu.npy, logvar.npy    encode(x) in eval mode
#   logits.npy            decode(mu) in eval mode
# Usage: python3 benches/peers/torch_nested_fixture.py OUT_DIR
import json, os, sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import save_file
from torch_common import mnist


def block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 4, 2, 1), nn.BatchNorm2d(o), nn.ReLU())


class Encoder(nn.Module):
    def __init__(s):
        super().__init__()
        s.features = nn.Sequential(block(1, 8), block(8, 16))
        s.fc = nn.Linear(16 * 7 * 7, 32)

    def forward(s, x):
        return F.relu(s.fc(s.features(x).flatten(1)))


class Decoder(nn.Module):
    def __init__(s, d):
        super().__init__()
        s.project = nn.Linear(d, 16 * 7 * 7)
        s.blocks = nn.Sequential(
            nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU()),
            nn.ConvTranspose2d(8, 1, 4, 2, 1))

    def forward(s, z):
        return s.blocks(F.relu(s.project(z)).view(-1, 16, 7, 7))


class NestedVAE(nn.Module):
    def __init__(s, d=4):
        super().__init__()
        s.enc = Encoder(); s.mu = nn.Linear(32, d); s.logvar = nn.Linear(32, d); s.dec = Decoder(d)

    def encode(s, x):
        h = s.enc(x.view(-1, 1, 28, 28)); return s.mu(h), s.logvar(h)

    def loss(s, x):
        mu, lv = s.encode(x)
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        rec = F.binary_cross_entropy_with_logits(s.dec(z).flatten(1), x, reduction='none').sum(1)
        return (rec - 0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1)).mean()


conv = lambda out, name: {"layer": "conv2d", "out": out, "kernel": 4, "stride": 2, "padding": 1, "name": name}
convt = lambda out, name: {"layer": "conv_transpose2d", "out": out, "kernel": 4, "stride": 2, "padding": 1, "name": name}
bn = lambda name: {"layer": "batch_norm2d", "name": name}
relu = {"layer": "activation", "kind": "relu"}
ARCH = {
    "encoder": [conv(8, "enc.features.0.0"), bn("enc.features.0.1"), relu,
                conv(16, "enc.features.1.0"), bn("enc.features.1.1"), relu,
                {"layer": "flatten"}, {"layer": "linear", "out": 32, "name": "enc.fc"}, relu],
    "decoder": [{"layer": "linear", "out": 784, "name": "dec.project"}, relu,
                {"layer": "unflatten", "channels": 16, "height": 7, "width": 7},
                convt(8, "dec.blocks.0.0"), bn("dec.blocks.0.1"), relu, convt(1, "dec.blocks.1")],
    "heads": {"fc_mu": "mu", "fc_logvar": "logvar"},
}

torch.manual_seed(0); torch.set_num_threads(2)
xtr, xte = mnist('train')[:320], mnist('test')[:8]
m = NestedVAE(); opt = torch.optim.Adam(m.parameters(), 1e-3)
m.train()
for i in range(0, 320, 32):
    loss = m.loss(xtr[i:i + 32]); opt.zero_grad(); loss.backward(); opt.step()
out = sys.argv[1] if len(sys.argv) > 1 else '.'
os.makedirs(out, exist_ok=True)
save_file(m.state_dict(), os.path.join(out, 'model.safetensors'))
with open(os.path.join(out, 'arch.json'), 'w') as f:
    json.dump(ARCH, f, indent=1)
m.eval()
with torch.no_grad():
    mu, lv = m.encode(xte); logits = m.dec(mu).flatten(1)
for name, t in [('x', xte), ('mu', mu), ('logvar', lv), ('logits', logits)]:
    np.save(os.path.join(out, name + '.npy'), t.numpy().astype(np.float32))
print(f"torch {torch.__version__}: wrote {out}: {sorted(m.state_dict())[:6]} …")
