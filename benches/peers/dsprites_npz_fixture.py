# Writes the fixture behind crates/latentlab-data/tests/npz.rs: small files
# in the layout of the original dSprites archive
# (dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz), written by numpy itself:
#   grid.npz        np.savez_compressed with imgs (u8 0/1, 48 × 64 × 64),
#                   latents_classes (int64, 48 × 6: colour 1, shape 3, scale
#                   2, orientation 2, x 2, y 2 values, the last fastest, as
#                   the original) and latents_values (float64, 48 × 6)
#   shuffled.npz    the same rows in a seeded shuffle (not an ordered grid)
#   bad_values.npz  imgs holding a 2
#   lying.npz       an imgs header claiming 10⁵ images over 4096 bytes
#   expected.json   per image: the pixel count, and the first lit pixel
# Usage: python3 benches/peers/dsprites_npz_fixture.py OUT_DIR
import io, json, os, sys, zipfile
import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else '.'
os.makedirs(out, exist_ok=True)
sizes = [1, 3, 2, 2, 2, 2]
classes = np.ascontiguousarray(
    np.array(np.meshgrid(*[np.arange(s) for s in sizes], indexing='ij')).reshape(6, -1).T)
n = len(classes)
imgs = np.zeros((n, 64, 64), np.uint8)
for i, (_, shape, scale, orient, x, y) in enumerate(classes):
    r = 4 + 3 * scale
    cy, cx = 16 + 32 * y, 16 + 32 * x
    yy, xx = np.mgrid[:64, :64]
    if shape == 0:
        on = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    elif shape == 1:
        on = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    else:
        on = (abs(yy - cy) + abs(xx - cx)) <= r
    if orient:
        on = on & ((yy + xx) % 2 == 0)
    imgs[i] = on
values = classes.astype(np.float64) / np.maximum(np.array(sizes) - 1, 1)
np.savez_compressed(os.path.join(out, 'grid.npz'), imgs=imgs, latents_classes=classes, latents_values=values)
perm = np.random.default_rng(0).permutation(n)
np.savez_compressed(os.path.join(out, 'shuffled.npz'), imgs=imgs[perm], latents_classes=classes[perm],
                    latents_values=values[perm])
bad = imgs.copy(); bad[5, 3, 3] = 2
np.savez_compressed(os.path.join(out, 'bad_values.npz'), imgs=bad, latents_classes=classes, latents_values=values)
b = io.BytesIO(); np.save(b, imgs[:1]); raw = b.getvalue()
header_len = int.from_bytes(raw[8:10], 'little')
header = raw[10:10 + header_len].decode().replace("(1, 64, 64)", "(100000, 64, 64)")
header = header.rstrip('\n').rstrip(' ')
header = header + ' ' * ((64 - (10 + len(header) + 1) % 64) % 64) + '\n'
lying = raw[:8] + len(header).to_bytes(2, 'little') + header.encode() + raw[10 + header_len:]
with zipfile.ZipFile(os.path.join(out, 'lying.npz'), 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('imgs.npy', lying)
expected = {'n': int(n), 'classes': classes.tolist(), 'values': values.tolist(),
            'pixels': [int(v) for v in imgs.reshape(n, -1).sum(1)],
            'first_on': [int(np.flatnonzero(im)[0]) if im.any() else -1 for im in imgs.reshape(n, -1)],
            'shuffled_order': [int(p) for p in perm]}
with open(os.path.join(out, 'expected.json'), 'w') as f:
    json.dump(expected, f)
print(n, 'images;', {k: os.path.getsize(os.path.join(out, k)) for k in os.listdir(out)})
