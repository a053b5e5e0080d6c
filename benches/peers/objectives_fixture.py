# Writes the fixture behind crates/latentlab-model/tests/objectives.rs: the
# latent terms of beta-TCVAE (both estimators), DIP-VAE-I/-II and MMD (RBF
# and inverse multiquadratic kernels), written here from the papers'
# equations in PyTorch (float64, broadcasting, torch.logsumexp), with their
# gradients from autograd, on one seeded batch. latentlab's host
# implementation (crates/latentlab-model/src/objective.rs) is a separate
# derivation with hand-written gradients; the test compares them to 1e-5.
#   Chen et al. 2018 (beta-TCVAE), appendix C: MWS weights 1/(N M), MSS
#     weights 1/N (own), (N - M)/(N M) (the next image), 1/M (the rest),
#     M = B - 1 (the corrected diagonals of rtqichen/beta-tcvae PR #1).
#   Kumar et al. 2018 (DIP-VAE): Cov(mu) [+ E diag(exp(logvar))],
#     lambda_od sum_{i!=j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2.
#   Gretton et al. 2012 / Tolstikhin et al. 2018: the V-statistic MMD^2.
#   Kim & Mnih 2018 (FactorVAE) as disentanglement_lib trains it: an MLP
#     discriminator (leaky ReLU 0.2, here 3 x 16 so the fixture stays
#     small), TC = mean(logit0(z) - logit1(z)), its loss
#     -0.5 mean log p0(z) - 0.5 mean log p1(z~) with probabilities clipped
#     to [1e-6, 1 - 1e-6], and two torch.optim.Adam steps (lr 1e-4,
#     betas 0.5, 0.9) of the discriminator.
#   Burda et al. 2016 (IWAE): -mean_i log mean_s w_is, log w = log p(x|z)
#     + log p(z) - log q(z|x), on K samples per image with given NLLs.
# Usage: python3 benches/peers/objectives_fixture.py OUT.json
import json, math, sys
import torch

torch.manual_seed(0)
B, D, N = 16, 5, 1000
mu = torch.randn(B, D, dtype=torch.float64) * 1.5
logvar = torch.randn(B, D, dtype=torch.float64) * 0.5 - 1.0
eps = torch.randn(B, D, dtype=torch.float64)
z = mu + torch.exp(0.5 * logvar) * eps
prior = torch.randn(B, D, dtype=torch.float64)


def log_normal(x, m, lv):
    return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / torch.exp(lv))


def tcvae(mu, lv, z, alpha, beta, gamma, estimator):
    m = log_normal(z[:, None, :], mu[None, :, :], lv[None, :, :])  # [i, j, d]
    if estimator == 'mws':
        logw = torch.full((B, B), -math.log(N * B), dtype=torch.float64)
    else:
        M = B - 1
        w = torch.full((B, B), 1.0 / M, dtype=torch.float64)
        idx = torch.arange(B)
        w[idx, idx] = 1.0 / N
        w[idx, (idx + 1) % B] = (N - M) / (N * M)
        logw = w.log()
    log_qz_x = m[idx_all, idx_all, :].sum(1)
    log_qz = torch.logsumexp(logw + m.sum(2), dim=1)
    log_prod = torch.logsumexp(logw[:, :, None] + m, dim=1).sum(1)
    log_pz = (-0.5 * (math.log(2 * math.pi) + z ** 2)).sum(1)
    mi = (log_qz_x - log_qz).mean()
    tc = (log_qz - log_prod).mean()
    dwkl = (log_prod - log_pz).mean()
    return alpha * mi + beta * tc + gamma * dwkl, {'mi': mi, 'tc': tc, 'dwkl': dwkl}


idx_all = torch.arange(B)


def dip(mu, lv, z, variant, lod, ld):
    c = mu - mu.mean(0, keepdim=True)
    cov = c.T @ c / B
    if variant == 'ii':
        cov = cov + torch.diag(torch.exp(lv).mean(0))
    off = (cov ** 2).sum() - (torch.diagonal(cov) ** 2).sum()
    diag = ((torch.diagonal(cov) - 1) ** 2).sum()
    return lod * off + ld * diag, {'dip_off_diagonal': off, 'dip_diagonal': diag}


def mmd(mu, lv, z, kernel, scale, lam):
    def k(a, b):
        r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(2)
        return torch.exp(-r2 / scale) if kernel == 'rbf' else scale / (scale + r2)
    v = k(z, z).mean() + k(prior, prior).mean() - 2 * k(z, prior).mean()
    return lam * v, {'mmd': v}


cases = [
    ('beta_tcvae', {'alpha': 1.0, 'beta': 6.0, 'gamma': 1.0, 'estimator': 'mws'}, lambda *a: tcvae(*a, 1.0, 6.0, 1.0, 'mws')),
    ('beta_tcvae', {'alpha': 1.0, 'beta': 6.0, 'gamma': 1.0, 'estimator': 'mss'}, lambda *a: tcvae(*a, 1.0, 6.0, 1.0, 'mss')),
    ('beta_tcvae', {'alpha': 0.5, 'beta': 2.0, 'gamma': 1.5, 'estimator': 'mss'}, lambda *a: tcvae(*a, 0.5, 2.0, 1.5, 'mss')),
    ('dip', {'variant': 'i', 'lambda_od': 5.0, 'lambda_d': 50.0}, lambda *a: dip(*a, 'i', 5.0, 50.0)),
    ('dip', {'variant': 'ii', 'lambda_od': 5.0, 'lambda_d': 5.0}, lambda *a: dip(*a, 'ii', 5.0, 5.0)),
    ('mmd', {'kernel': 'rbf', 'scale': 2.0 * D, 'lambda': 100.0}, lambda *a: mmd(*a, 'rbf', 2.0 * D, 100.0)),
    ('mmd', {'kernel': 'imq', 'scale': 2.0 * D, 'lambda': 100.0}, lambda *a: mmd(*a, 'imq', 2.0 * D, 100.0)),
]
out = {'rows': B, 'dims': D, 'dataset_size': N, 'torch': torch.__version__,
       'mu': mu.flatten().tolist(), 'logvar': logvar.flatten().tolist(),
       'z': z.flatten().tolist(), 'prior': prior.flatten().tolist(), 'cases': []}
for name, params, f in cases:
    # z is an input of its own: the gradients are the partial ones with
    # respect to mu, logvar and z, as the objective module gives them.
    m, l, zz = (t.clone().requires_grad_(True) for t in (mu, logvar, z))
    loss, parts = f(m, l, zz)
    loss.backward()
    out['cases'].append({
        'objective': name, 'params': params, 'loss': loss.item(),
        'parts': {k: v.item() for k, v in parts.items()},
        **{f'grad_{k}': (t.grad if t.grad is not None else torch.zeros_like(t)).flatten().tolist()
           for k, t in [('mu', m), ('logvar', l), ('z', zz)]},
    })
# IWAE: K samples per image and each sample's reconstruction NLL as inputs
# of their own, so autograd gives the partials the objective module returns
# (the decoder's path is the NLL's weight).
K = 4
iw_z = (mu[:, None, :] + torch.exp(0.5 * logvar)[:, None, :]
        * torch.randn(B, K, D, dtype=torch.float64)).reshape(B * K, D)
iw_nll = torch.rand(B * K, dtype=torch.float64) * 20.0 + 40.0
m, l, zz, nn = (t.clone().requires_grad_(True) for t in (mu, logvar, iw_z, iw_nll))
zk = zz.reshape(B, K, D)
log_w = (-nn.reshape(B, K)
         + (-0.5 * (math.log(2 * math.pi) + zk ** 2)).sum(2)
         - log_normal(zk, m[:, None, :], l[:, None, :]).sum(2))
bound = (torch.logsumexp(log_w, dim=1) - math.log(K)).mean()
(-bound).backward()
out['iwae'] = {'samples': K, 'z': iw_z.flatten().tolist(), 'nll': iw_nll.tolist(),
               'loss': -bound.item(), 'iw_bound': bound.item(),
               'grad_mu': m.grad.flatten().tolist(), 'grad_logvar': l.grad.flatten().tolist(),
               'grad_z': zz.grad.flatten().tolist(), 'grad_nll': nn.grad.tolist()}
# FactorVAE: z, its dimension-wise permutation within the batch, the
# discriminator's weights (nn.Linear's layout, [out, in]), and gamma.
# The discriminator runs in f32 in latentlab: its inputs here are rounded
# to f32 first, so the two differ by latentlab's arithmetic alone.
W, DEPTH, GAMMA = 16, 3, 20.0
f32 = lambda t: t.float().double()
z_d = f32(z)
perm = torch.stack([torch.randperm(B) for _ in range(D)], dim=1)
z_shuf = torch.gather(z_d, 0, perm)
layers = []
fan = D
for i in range(DEPTH + 1):
    out_f = 2 if i == DEPTH else W
    lin = torch.nn.Linear(fan, out_f).double()
    with torch.no_grad():
        lin.weight.copy_(f32(lin.weight))
        lin.bias.copy_(f32(lin.bias))
    layers.append(lin)
    fan = out_f


def disc(v):
    h = v
    for i, lin in enumerate(layers):
        h = lin(h)
        if i < DEPTH:
            h = torch.nn.functional.leaky_relu(h, 0.2)
    return h


weights = [t.detach().clone() for lin in layers for t in (lin.weight, lin.bias)]
zz = z_d.clone().requires_grad_(True)
logits = disc(zz)
tc = (logits[:, 0] - logits[:, 1]).mean()
(GAMMA * tc).backward()
grad_z_tc = zz.grad.clone()
for lin in layers:
    lin.zero_grad()
lz = disc(z_d)
ls = disc(z_shuf)
pz = torch.softmax(lz, 1).clamp(1e-6, 1 - 1e-6)
ps = torch.softmax(ls, 1).clamp(1e-6, 1 - 1e-6)
dloss = -(0.5 * pz[:, 0].log().mean() + 0.5 * ps[:, 1].log().mean())
dloss.backward()
acc = ((lz[:, 0] > lz[:, 1]).double().mean() + (ls[:, 1] > ls[:, 0]).double().mean()) / 2
dgrads = [t.grad.clone() for lin in layers for t in (lin.weight, lin.bias)]
opt = torch.optim.Adam([t for lin in layers for t in (lin.weight, lin.bias)], lr=1e-4, betas=(0.5, 0.9))
opt.step()
# A second step on the same codes: the first of Adam's bias-corrected
# steps is lr * sign(g) whatever the betas; the second depends on them.
opt.zero_grad()
p2z = torch.softmax(disc(z_d), 1).clamp(1e-6, 1 - 1e-6)
p2s = torch.softmax(disc(z_shuf), 1).clamp(1e-6, 1 - 1e-6)
(-(0.5 * p2z[:, 0].log().mean() + 0.5 * p2s[:, 1].log().mean())).backward()
opt.step()
after = [t.detach().clone() for lin in layers for t in (lin.weight, lin.bias)]
flat = lambda ts: [t.flatten().tolist() for t in ts]
out['factor_vae'] = {'width': W, 'depth': DEPTH, 'gamma': GAMMA,
                     'z': z_d.flatten().tolist(), 'z_shuffled': z_shuf.flatten().tolist(),
                     'weights': flat(weights), 'tc': tc.item(),
                     'grad_z': grad_z_tc.flatten().tolist(), 'disc_loss': dloss.item(),
                     'accuracy': acc.item(), 'disc_grads': flat(dgrads), 'after_adam': flat(after)}
with open(sys.argv[1] if len(sys.argv) > 1 else 'objectives.json', 'w') as fh:
    json.dump(out, fh)
print(f"torch {torch.__version__}: {len(cases)} cases")
