# Writes the fixture behind crates/latentlab-diagnostics/tests/dlib_metrics.rs:
# disentanglement_lib's own MIG, SAP, DCI and modularity/explicitness code
# run on fixed arrays of codes and factors, one folder per representation:
#   codes_train.npy, codes_test.npy      N × d codes (f32, as encoders give)
#   factors_train.npy, factors_test.npy  N × K classes (u8) or values (f64)
#   expected.json                        the reference's scores on them
# Discrete cases score the factors as given. The continuous case follows
# latentlab's stated treatment of continuous factors: SAP in its R² mode on
# the values; MIG, modularity, DCI and explicitness on the factors cut into
# 20 equal-width bins between the training minimum and maximum (numpy's
# histogram edges; the test values are cut at the training edges).
#
# disentanglement_lib's metric modules install without their dependencies
#   pip install --no-deps disentanglement-lib six
# and beyond numpy, scipy and scikit-learn import only gin's decorators and
# absl's logging, stubbed below.
# Usage: python3 benches/peers/dlib_metrics_fixture.py OUT_DIR
import json, os, sys, types
import numpy as np


def stub_modules():
    gin = types.ModuleType('gin')
    gin.REQUIRED = object()
    gin.configurable = lambda *a, **k: (lambda f: f)
    gin.tf = types.ModuleType('gin.tf')
    sys.modules.update({'gin': gin, 'gin.tf': gin.tf})
    try:
        import absl.logging  # noqa: F401
    except ImportError:
        absl = types.ModuleType('absl')
        absl.logging = types.SimpleNamespace(info=lambda *a, **k: None)
        sys.modules.update({'absl': absl, 'absl.logging': absl.logging})


stub_modules()
from disentanglement_lib.evaluation.metrics import (  # noqa: E402
    dci, mig, modularity_explicitness as me, sap_score, utils)

BINS = 20
# make_discretizer's arguments come from gin in the reference; bind them.
utils.make_discretizer.__defaults__ = (BINS, utils._histogram_discretize)


def reference(ct, ft, ce, fe, continuous):
    """Every code-level metric of disentanglement_lib on N × d / N × K
    arrays (the reference takes them transposed)."""
    mt, me_ = ct.T.astype(np.float64), ce.T.astype(np.float64)
    yt, ye = ft.T, fe.T
    if continuous:
        edges = [np.histogram(y, BINS)[1][:-1] for y in yt]
        cut = lambda ys: np.stack([np.digitize(y, e) for y, e in zip(ys, edges)])
        yt_cls, ye_cls = cut(yt), cut(ye)
    else:
        yt_cls, ye_cls = yt, ye
    out = {'mig': mig._compute_mig(mt, yt_cls)['discrete_mig']}
    out['sap'] = sap_score._compute_sap(mt, yt, me_, ye, continuous)['SAP_score']
    d = dci._compute_dci(mt, yt_cls, me_, ye_cls)
    out.update({
        'dci_disentanglement': d['disentanglement'],
        'dci_completeness': d['completeness'],
        'dci_informativeness': d['informativeness_test'],
        'dci_informativeness_train': d['informativeness_train'],
    })
    mi = utils.discrete_mutual_info(utils.make_discretizer(mt), yt_cls)
    out['modularity'] = me.modularity(mi)
    norm_t, mean, std = utils.normalize_data(mt)
    norm_e, _, _ = utils.normalize_data(me_, mean, std)
    ex = [me.explicitness_per_factor(norm_t, y, norm_e, z) for y, z in zip(yt_cls, ye_cls)]
    out['explicitness_train'] = float(np.mean([e[0] for e in ex]))
    out['explicitness'] = float(np.mean([e[1] for e in ex]))
    return {k: float(v) for k, v in out.items()}


def cases(rng, n_train=1000, n_test=500):
    sizes = [3, 4, 5, 6]
    n = n_train + n_test
    f = np.stack([rng.integers(0, s, n) for s in sizes], 1)
    z = (f - f.mean(0)) / f.std(0)
    noise = lambda d, s: s * rng.standard_normal((n, d))
    yield 'identity_noisy', f, np.hstack([z + noise(4, 0.3), noise(2, 1.0)])
    mix = rng.standard_normal((4, 6))
    yield 'mixed', f, z @ mix + noise(6, 0.3)
    yield 'redundant', f, np.hstack(
        [z[:, [0]], z[:, [0]] + noise(1, 0.1), z[:, [1, 2]] + noise(2, 0.2), noise(1, 1.0)])
    yield 'nonlinear', f, np.hstack(
        [np.tanh(z[:, [2]]), np.exp(0.5 * z[:, [0]]), z[:, [3]] ** 3, np.sin(z[:, [1]])]) + noise(4, 0.1)
    yield 'noise', f, noise(5, 1.0)
    v = rng.random((n, 3))
    v[0], v[1] = 0.0, 1.0  # the training range covers the test values
    yield 'continuous', v, np.hstack(
        [np.sin(2 * v[:, [0]]), v[:, [1]] ** 2, v[:, [2]] + 0.5 * v[:, [0]]]) + noise(3, 0.05)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else '.'
    rng = np.random.default_rng(0)
    for name, f, c in cases(rng):
        continuous = name == 'continuous'
        c = c.astype(np.float32)
        f = f.astype(np.float64 if continuous else np.uint8)
        ct, ce, ft, fe = c[:1000], c[1000:], f[:1000], f[1000:]
        if not continuous:
            for k in range(f.shape[1]):
                assert set(ft[:, k]) == set(fe[:, k]), 'every class in both splits'
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        for a, fn in [(ct, 'codes_train'), (ce, 'codes_test'), (ft, 'factors_train'), (fe, 'factors_test')]:
            np.save(os.path.join(d, fn + '.npy'), a)
        exp = {'continuous': continuous, 'bins': BINS, 'scores': reference(ct, ft, ce, fe, continuous)}
        with open(os.path.join(d, 'expected.json'), 'w') as fh:
            json.dump(exp, fh, indent=1, sort_keys=True)
        print(name, exp['scores'])


if __name__ == '__main__':
    main()
