# Replays a latentlab run in PyTorch. The run is written by
#   cargo run --release -p latentlab-model --example dump_randomness -- 20 SEED DIR
# This script trains DESIGN.md's module with the same Adam settings, using
# any of latentlab's random streams: i = initial weights, p = batch order,
# e = reparameterisation noise. Streams not chosen come from PyTorch,
# seeded with SEED + 1000. It prints the test -ELBO (nats per image, mean of
# 10 seeded samples of z) of the PyTorch run and of latentlab's final weights.
# Usage: python3 benches/peers/torch_parity.py DIR SEED [ipe]
import os, sys, numpy as np, torch
from safetensors.torch import load_file
from torch_common import VAE, mnist, test_elbo
torch.set_num_threads(2)
xtr, xte = mnist('train'), mnist('test')
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
        rec, kl = m.terms(x, torch.tensor(eps[step, :len(x)]) if 'e' in use else None); step += 1
        opt.zero_grad(); (rec + kl).mean().backward(); opt.step()
ours = VAE(); ours.load_state_dict(load_file(os.path.join(run, 'final.safetensors')), strict=False)
print(f"seed {seed}, latentlab streams '{use}': PyTorch {test_elbo(m, xte, 10, 123):.2f}, "
      f"latentlab {test_elbo(ours, xte, 10, 123):.2f}")
