# The reference run in PyTorch (DESIGN.md's module, 784-512-256-20,
# ReLU, Bernoulli on grey levels, Adam 1e-3, batch 128, 20 epochs on the
# 8,000 mnist-10k training digits), with the test -ELBO measured as latentlab
# measures it: one sample of z per test digit, analytic KL, nats per image.
# Usage: python3 benches/peers/torch_elbo.py [EPOCHS] [SEED ...]
# PEER_THREADS sets torch's thread count (default 2); the first line says
# which torch and how many threads ran.
import os, sys, torch
from torch_common import VAE, mnist, test_elbo
torch.set_num_threads(int(os.environ.get('PEER_THREADS', '2')))
print(f"# torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
xtr, xte = mnist('train'), mnist('test')
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
seeds = [int(a) for a in sys.argv[2:]] or [0, 1, 2, 3]
for seed in seeds:
    torch.manual_seed(seed)
    m = VAE(); opt = torch.optim.Adam(m.parameters(), 1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 128):
            rec, kl = m.terms(xtr[perm[i:i + 128]])
            opt.zero_grad(); (rec + kl).mean().backward(); opt.step()
    print(f"seed {seed}: test -ELBO {test_elbo(m, xte):.2f}", flush=True)
