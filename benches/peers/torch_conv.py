# The PyTorch peer of the conv64 benchmark (DESIGN.md's ConvVAE, Burgess et
# al. 2018) on dSprites images that `cargo xtask conv` wrote with latentlab's
# own generator, so both sides train on the same images:
#   DIR/train-SEED.npy, DIR/test-SEED.npy   u8 images (N × 4096, values 0/1)
# β-VAE (β = 4), batch 64, Adam 1e-4, Bernoulli logits, one z per image.
# Usage: python3 benches/peers/torch_conv.py speed DIR SEED
#        python3 benches/peers/torch_conv.py quality DIR EPOCHS SEED [SEED ...]
# speed prints "pytorch VERSION: N images/s (T threads, batch 64)" for one
# epoch after a warm-up of 5 steps; quality prints one line per seed with the
# test -ELBO (reconstruction + KL, nats per image) as latentlab measures it.
# PEER_THREADS sets torch's thread count (default 2).
import os, sys, time, numpy as np, torch
from torch_common import ConvVAE
torch.set_num_threads(int(os.environ.get('PEER_THREADS', '2')))
BETA, BATCH, LR = 4.0, 64, 1e-4

def load(d, part, seed):
    return torch.tensor(np.load(os.path.join(d, f'{part}-{seed}.npy')).astype(np.float32))

def epoch(m, opt, x):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), BATCH):
        rec, kl = m.terms(x[perm[i:i + BATCH]])
        opt.zero_grad(); (rec + BETA * kl).mean().backward(); opt.step()

mode, d = sys.argv[1], sys.argv[2]
print(f"# torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
if mode == 'speed':
    seed = int(sys.argv[3]); torch.manual_seed(seed)
    x = load(d, 'train', seed)
    m = ConvVAE(c=1, d=10); opt = torch.optim.Adam(m.parameters(), LR)
    epoch(m, opt, x[:5 * BATCH])
    t = time.perf_counter(); epoch(m, opt, x); dt = time.perf_counter() - t
    print(f"pytorch {torch.__version__}: {len(x) / dt:.0f} images/s ({torch.get_num_threads()} threads, batch {BATCH})")
else:
    epochs = int(sys.argv[3])
    for seed in [int(a) for a in sys.argv[4:]]:
        torch.manual_seed(seed)
        x, xt = load(d, 'train', seed), load(d, 'test', seed)
        m = ConvVAE(c=1, d=10); opt = torch.optim.Adam(m.parameters(), LR)
        for _ in range(epochs):
            epoch(m, opt, x)
        with torch.no_grad():
            tot = 0.0
            for i in range(0, len(xt), 500):
                rec, kl = m.terms(xt[i:i + 500]); tot += (rec + kl).sum().item()
        print(f"seed {seed}: test -ELBO {tot / len(xt):.2f}", flush=True)
