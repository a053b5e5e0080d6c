# Writes the PyTorch fixture behind crates/latentlab-model/tests/pytorch.rs:
# DESIGN.md's module at a small size (784-48-24-6), trained for two epochs on
# the first 2,000 mnist-10k training digits, saved with
# safetensors.torch.save_file(model.state_dict()) (no latentlab metadata),
# with PyTorch's own outputs on the first 32 test digits:
#   mu.npy, logvar.npy      encode(x)
#   decoded.npy             sigmoid(decoder(mu)), the mean of p(x|z) at z = mu
#   logits.npy              decoder(mu)
# Usage: python3 benches/peers/torch_fixture.py OUT_DIR
import gzip, os, sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import save_file
torch.manual_seed(0); torch.set_num_threads(2)
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'crates', 'latentlab-data', 'data', 'mnist-10k') + '/'
def idx(p):
    b = gzip.open(p).read(); return np.frombuffer(b, np.uint8, offset=16 if b[3] == 3 else 8)
xtr = torch.tensor(idx(D + 'train-images-idx3-ubyte.gz').reshape(-1, 784)[:2000] / 255., dtype=torch.float32)
xte = torch.tensor(idx(D + 't10k-images-idx3-ubyte.gz').reshape(-1, 784)[:32] / 255., dtype=torch.float32)
class VAE(nn.Module):
    def __init__(s, d_in=784, h=(48, 24), d=6):
        super().__init__()
        s.encoder = nn.Sequential(nn.Linear(d_in, h[0]), nn.ReLU(), nn.Linear(h[0], h[1]), nn.ReLU())
        s.fc_mu = nn.Linear(h[1], d); s.fc_logvar = nn.Linear(h[1], d)
        s.decoder = nn.Sequential(nn.Linear(d, h[1]), nn.ReLU(), nn.Linear(h[1], h[0]), nn.ReLU(), nn.Linear(h[0], d_in))
    def encode(s, x):
        h = s.encoder(x); return s.fc_mu(h), s.fc_logvar(h)
m = VAE(); opt = torch.optim.Adam(m.parameters(), 1e-3)
for _ in range(2):
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 64):
        x = xtr[perm[i:i + 64]]
        mu, lv = m.encode(x); z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        rec = F.binary_cross_entropy_with_logits(m.decoder(z), x, reduction='sum') / len(x)
        kl = (-0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1)).mean()
        opt.zero_grad(); (rec + kl).backward(); opt.step()
out = sys.argv[1] if len(sys.argv) > 1 else '.'
os.makedirs(out, exist_ok=True)
save_file(m.state_dict(), os.path.join(out, 'model.safetensors'))
with torch.no_grad():
    mu, lv = m.encode(xte); logits = m.decoder(mu)
for name, t in [('mu', mu), ('logvar', lv), ('logits', logits), ('decoded', torch.sigmoid(logits))]:
    np.save(os.path.join(out, name + '.npy'), t.numpy().astype(np.float32))
print(f"torch {torch.__version__}: wrote {out}")
