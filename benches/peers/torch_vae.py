# The PyTorch peer of the reference set-up (DESIGN.md's module): training
# throughput on PEER_THREADS threads (default 2), and a state_dict checkpoint with its test-set
# encodings for checking that latentlab loads PyTorch files.
# Usage: python3 benches/peers/torch_vae.py OUT_DIR
import os, sys, time, numpy as np, torch, torch.nn.functional as F
from safetensors.torch import save_file
from torch_common import VAE, mnist
torch.set_num_threads(int(os.environ.get('PEER_THREADS', '2'))); torch.manual_seed(0)
OUT = sys.argv[1] if len(sys.argv) > 1 else '.'
xtr, xte = mnist('train'), mnist('test')
m = VAE(); opt = torch.optim.Adam(m.parameters(), 1e-3)
def epoch():
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 128):
        x = xtr[perm[i:i+128]]
        mu, lv = m.encode(x); z = mu + torch.exp(0.5*lv)*torch.randn_like(mu)
        rec = F.binary_cross_entropy_with_logits(m.decoder(z), x, reduction='sum')/len(x)
        kl = (-0.5*(1+lv-mu**2-lv.exp()).sum(1)).mean()
        loss = rec + kl; opt.zero_grad(); loss.backward(); opt.step()
epoch()  # warm-up
t = time.perf_counter(); E = 3
for _ in range(E): epoch()
dt = time.perf_counter() - t
print(f"pytorch {torch.__version__}: {E*len(xtr)/dt:.0f} images/s ({torch.get_num_threads()} threads, batch 128)")
save_file(m.state_dict(), os.path.join(OUT, 'torch.safetensors'))
with torch.no_grad():
    mu, lv = m.encode(xte); dec = torch.sigmoid(m.decoder(mu))
np.save(os.path.join(OUT, 'mu.npy'), mu.numpy()); np.save(os.path.join(OUT, 'lv.npy'), lv.numpy()); np.save(os.path.join(OUT, 'dec.npy'), dec.numpy())
