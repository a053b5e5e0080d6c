# Writes the PyTorch fixture behind crates/latentlab-model/tests/pytorch_conv.rs:
# DESIGN.md's conv64 module (one channel, latent 6) after 20 Adam steps on
# zero-padded mnist-10k digits, saved with
# safetensors.torch.save_file(model.state_dict()) (no latentlab metadata),
# with PyTorch's own outputs on 8 test digits (padded to 64×64):
#   x.npy                   the batch (8 × 4096)
#   mu.npy, logvar.npy      encode(x)
#   logits.npy, decoded.npy decoder(mu) and sigmoid of it
#   eps.npy                 a draw of ε (8 × 6)
#   grads.safetensors       ∂/∂θ of mean(rec + 4·KL) over the batch at that ε
# Usage: python3 benches/peers/torch_conv_fixture.py OUT_DIR
import os, sys, numpy as np, torch
from safetensors.torch import save_file
from torch_common import ConvVAE, mnist64
torch.manual_seed(0); torch.set_num_threads(2)
xtr, xte = mnist64('train', 640), mnist64('test', 8)
m = ConvVAE(c=1, d=6); opt = torch.optim.Adam(m.parameters(), 1e-3)
for i in range(0, 640, 32):
    rec, kl = m.terms(xtr[i:i + 32])
    opt.zero_grad(); (rec + 4 * kl).mean().backward(); opt.step()
out = sys.argv[1] if len(sys.argv) > 1 else '.'
os.makedirs(out, exist_ok=True)
save_file(m.state_dict(), os.path.join(out, 'model.safetensors'))
eps = torch.randn(8, 6)
m.zero_grad()
rec, kl = m.terms(xte, eps)
(rec + 4 * kl).mean().backward()
save_file({k: p.grad.contiguous() for k, p in m.named_parameters()}, os.path.join(out, 'grads.safetensors'))
with torch.no_grad():
    mu, lv = m.encode(xte); logits = m.decoder(mu).flatten(1)
for name, t in [('x', xte), ('eps', eps), ('mu', mu), ('logvar', lv), ('logits', logits),
                ('decoded', torch.sigmoid(logits)), ('loss', (rec + 4 * kl).mean().detach().view(1, 1))]:
    np.save(os.path.join(out, name + '.npy'), t.numpy().astype(np.float32))
print(f"torch {torch.__version__}: wrote {out}")
