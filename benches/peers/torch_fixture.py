# Writes the PyTorch fixture behind crates/latentlab-model/tests/pytorch.rs:
# DESIGN.md's module at a small size (784-48-24-6), trained for two epochs on
# the first 2,000 mnist-10k training digits, saved with
# safetensors.torch.save_file(model.state_dict()) (no latentlab metadata),
# with PyTorch's own outputs on the first 32 test digits:
#   mu.npy, logvar.npy      encode(x)
#   decoded.npy             sigmoid(decoder(mu)), the mean of p(x|z) at z = mu
#   logits.npy              decoder(mu)
# Usage: python3 benches/peers/torch_fixture.py OUT_DIR
import os, sys, numpy as np, torch
from safetensors.torch import save_file
from torch_common import VAE, mnist
torch.manual_seed(0); torch.set_num_threads(2)
xtr, xte = mnist('train')[:2000], mnist('test')[:32]
m = VAE(h=(48, 24), d=6); opt = torch.optim.Adam(m.parameters(), 1e-3)
for _ in range(2):
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 64):
        rec, kl = m.terms(xtr[perm[i:i + 64]])
        opt.zero_grad(); (rec + kl).mean().backward(); opt.step()
out = sys.argv[1] if len(sys.argv) > 1 else '.'
os.makedirs(out, exist_ok=True)
save_file(m.state_dict(), os.path.join(out, 'model.safetensors'))
with torch.no_grad():
    mu, lv = m.encode(xte); logits = m.decoder(mu)
for name, t in [('mu', mu), ('logvar', lv), ('logits', logits), ('decoded', torch.sigmoid(logits))]:
    np.save(os.path.join(out, name + '.npy'), t.numpy().astype(np.float32))
print(f"torch {torch.__version__}: wrote {out}")
