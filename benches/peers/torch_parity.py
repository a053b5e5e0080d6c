# Replays a latentlab run in PyTorch. The run is written by
#   cargo run --release -p latentlab-model --example dump_randomness -- 20 SEED DIR
# This script trains DESIGN.md's module with the same Adam settings, using
# any of latentlab's random streams: i = initial weights, p = batch order,
# e = reparameterisation noise. Streams not chosen come from PyTorch,
# seeded with SEED + 1000. It prints the test -ELBO (nats per image, mean of
# 10 seeded samples of z) of the PyTorch run and of latentlab's final weights.
# Usage: python3 benches/peers/torch_parity.py DIR SEED [ipe]
import gzip, os, sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import load_file
torch.set_num_threads(2)
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'crates', 'latentlab-data', 'data', 'mnist-10k') + '/'
def idx(p):
    b = gzip.open(p).read(); return np.frombuffer(b, np.uint8, offset=16 if b[3] == 3 else 8)
xtr = torch.tensor(idx(D + 'train-images-idx3-ubyte.gz').reshape(-1, 784) / 255., dtype=torch.float32)
xte = torch.tensor(idx(D + 't10k-images-idx3-ubyte.gz').reshape(-1, 784) / 255., dtype=torch.float32)
class VAE(nn.Module):
    def __init__(s, d_in=784, h=(512, 256), d=20):
        super().__init__()
        s.encoder = nn.Sequential(nn.Linear(d_in, h[0]), nn.ReLU(), nn.Linear(h[0], h[1]), nn.ReLU())
        s.fc_mu = nn.Linear(h[1], d); s.fc_logvar = nn.Linear(h[1], d)
        s.decoder = nn.Sequential(nn.Linear(d, h[1]), nn.ReLU(), nn.Linear(h[1], h[0]), nn.ReLU(), nn.Linear(h[0], d_in))
    def parts(s, x, eps=None):
        h = s.encoder(x); mu, lv = s.fc_mu(h), s.fc_logvar(h)
        z = mu + torch.exp(0.5 * lv) * (torch.randn_like(mu) if eps is None else eps)
        rec = F.binary_cross_entropy_with_logits(s.decoder(z), x, reduction='none').sum(1)
        return rec, -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1)
def test_elbo(model):
    torch.manual_seed(123); tot = 0.0
    with torch.no_grad():
        for _ in range(10):
            rec, kl = model.parts(xte); tot += (rec + kl).mean().item()
    return tot / 10
run, seed, use = sys.argv[1], int(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else 'ipe')
torch.manual_seed(seed + 1000)
m = VAE()
if 'i' in use:
    m.load_state_dict(load_file(os.path.join(run, 'init.safetensors')), strict=False)
opt = torch.optim.Adam(m.parameters(), 1e-3)
perm = np.load(os.path.join(run, 'perm.npy')); eps = np.load(os.path.join(run, 'eps.npy'))
step = 0
for e in range(perm.shape[0]):
    order = perm[e] if 'p' in use else torch.randperm(len(xtr)).numpy()
    for i in range(0, len(xtr), 128):
        x = xtr[torch.tensor(order[i:i + 128])]
        rec, kl = m.parts(x, torch.tensor(eps[step, :len(x)]) if 'e' in use else None); step += 1
        opt.zero_grad(); (rec + kl).mean().backward(); opt.step()
ours = VAE(); ours.load_state_dict(load_file(os.path.join(run, 'final.safetensors')), strict=False)
print(f"seed {seed}, latentlab streams '{use}': PyTorch {test_elbo(m):.2f}, latentlab {test_elbo(ours):.2f}")
