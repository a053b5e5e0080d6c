# The reference run in PyTorch (DESIGN.md's module, 784-512-256-20,
# ReLU, Bernoulli on grey levels, Adam 1e-3, batch 128, 20 epochs on the
# 8,000 mnist-10k training digits), with the test -ELBO measured as latentlab
# measures it: one sample of z per test digit, analytic KL, nats per image.
# Usage: python3 benches/peers/torch_elbo.py [EPOCHS] [SEED ...]
import gzip, os, sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
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
    def encode(s, x):
        h = s.encoder(x); return s.fc_mu(h), s.fc_logvar(h)
    def loss(s, x):
        mu, lv = s.encode(x); z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        rec = F.binary_cross_entropy_with_logits(s.decoder(z), x, reduction='none').sum(1)
        kl = -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1)
        return rec, kl
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
seeds = [int(a) for a in sys.argv[2:]] or [0, 1, 2, 3]
for seed in seeds:
    torch.manual_seed(seed)
    m = VAE(); opt = torch.optim.Adam(m.parameters(), 1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 128):
            rec, kl = m.loss(xtr[perm[i:i + 128]])
            loss = (rec + kl).mean(); opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        rec, kl = m.loss(xte)
    print(f"seed {seed}: test rec {rec.mean():.2f} KL {kl.mean():.2f} -ELBO {(rec + kl).mean():.2f}", flush=True)
