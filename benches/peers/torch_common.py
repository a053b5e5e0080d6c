# Shared by the PyTorch peers: the embedded MNIST-10k digits as grey levels
# in [0, 1], and DESIGN.md's VAE module with its per-image loss terms.
import gzip, os, numpy as np, torch, torch.nn as nn, torch.nn.functional as F

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'crates', 'latentlab-data', 'data', 'mnist-10k')

def idx(path):
    b = gzip.open(path).read()
    return np.frombuffer(b, np.uint8, offset=16 if b[3] == 3 else 8)

def mnist(split):
    """'train' (8,000 digits) or 'test' (2,000) as a float32 tensor of rows."""
    name = 'train-images-idx3-ubyte.gz' if split == 'train' else 't10k-images-idx3-ubyte.gz'
    return torch.tensor(idx(os.path.join(DATA, name)).reshape(-1, 784) / 255., dtype=torch.float32)

class VAE(nn.Module):
    def __init__(s, d_in=784, h=(512, 256), d=20):
        super().__init__()
        s.encoder = nn.Sequential(nn.Linear(d_in, h[0]), nn.ReLU(), nn.Linear(h[0], h[1]), nn.ReLU())
        s.fc_mu = nn.Linear(h[1], d); s.fc_logvar = nn.Linear(h[1], d)
        s.decoder = nn.Sequential(nn.Linear(d, h[1]), nn.ReLU(), nn.Linear(h[1], h[0]), nn.ReLU(), nn.Linear(h[0], d_in))
    def encode(s, x):
        h = s.encoder(x); return s.fc_mu(h), s.fc_logvar(h)
    def terms(s, x, eps=None):
        """Per-image reconstruction (-log p(x|z), one z) and KL, in nats."""
        mu, lv = s.encode(x)
        z = mu + torch.exp(0.5 * lv) * (torch.randn_like(mu) if eps is None else eps)
        rec = F.binary_cross_entropy_with_logits(s.decoder(z), x, reduction='none').sum(1)
        return rec, -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1)

def test_elbo(model, x, samples=1, seed=None):
    """Mean test -ELBO over `samples` draws of z per image."""
    if seed is not None:
        torch.manual_seed(seed)
    tot = 0.0
    with torch.no_grad():
        for _ in range(samples):
            rec, kl = model.terms(x); tot += (rec + kl).mean().item()
    return tot / samples

class ConvVAE(nn.Module):
    """The conv64 module of DESIGN.md (Burgess et al. 2018): 64×64×c images, latent d."""
    def __init__(s, c=1, d=10):
        super().__init__()
        s.encoder = nn.Sequential(
            nn.Conv2d(c, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(1024, 256), nn.ReLU())
        s.fc_mu = nn.Linear(256, d); s.fc_logvar = nn.Linear(256, d)
        s.decoder = nn.Sequential(
            nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 1024), nn.ReLU(), nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, c, 4, 2, 1))
        s.c = c
    def encode(s, x):
        h = s.encoder(x.view(-1, s.c, 64, 64)); return s.fc_mu(h), s.fc_logvar(h)
    def terms(s, x, eps=None):
        """Per-image reconstruction (-log p(x|z), one z) and KL, in nats; x is n × c·64·64."""
        mu, lv = s.encode(x)
        z = mu + torch.exp(0.5 * lv) * (torch.randn_like(mu) if eps is None else eps)
        logits = s.decoder(z).flatten(1)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(1)
        return rec, -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1)

def mnist64(split, n):
    """The first n digits of a split, zero-padded to 64×64, as rows of 4096."""
    x = mnist(split)[:n].view(n, 1, 28, 28)
    return F.pad(x, (18, 18, 18, 18)).reshape(n, 4096)
