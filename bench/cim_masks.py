"""Learned mask model against the plain CAM on the same trained CIM network. Usage:
    python bench/cim_masks.py <bench out>/<variant>/seed<S> [variant spec, default cim]
for a finished run of the Fashion-MNIST validation protocol (--train_per_class 500 --eval val). It resumes a copy of
the run, then prints the boxes' IoU and area with rational activations and with ReLU over every seen class's training
images, and the largest |R(x) - ReLU(x)| of the trained activations on [-3, 3]."""
import shutil, sys, tempfile, torch
from pathlib import Path
from cil_nb.cli import prepare
from cil_nb.learner import run
if len(sys.argv) < 2 or not (Path(sys.argv[1]) / 'checkpoint.pt').exists():
    sys.exit('usage: python bench/cim_masks.py <finished run folder with checkpoint.pt> [variant spec, default cim]')
src = Path(sys.argv[1]); spec = sys.argv[2] if len(sys.argv) > 2 else 'cim'
tmp = Path(tempfile.mkdtemp()) / 'run'; shutil.copytree(src, tmp)
ms, sc, dev, _ = prepare(spec, 'fashion-mnist', train_per_class=500, eval='val', out=str(tmp.parent))
m = ms[0]; seed = int(src.name.replace('seed', ''))
run(m, sc, device='cpu', seed=seed, out=tmp, resume=True, log=lambda s: None)
x, y = m.train_x, m.train_y
keep = y < sc[len(sc) - 1].n_seen
x, y = x[keep], y[keep]
def area(b): return ((b[:, 1] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 2]).clamp_min(0)).float()   # boxes (y0, y1, x0, x1)
bs = {r: torch.cat([m.boxes(x[i:i + 500], y[i:i + 500], rational=r) for i in range(0, len(x), 500)]) for r in (True, False)}
a, b = bs[True], bs[False]
ix = (torch.minimum(a[:, 1], b[:, 1]) - torch.maximum(a[:, 0], b[:, 0])).clamp_min(0) * (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 2], b[:, 2])).clamp_min(0)
iou = ix.float() / (area(a) + area(b) - ix.float()).clamp_min(1)
H, W = x.shape[-2:]
t = torch.linspace(-3, 3, 601)
with torch.no_grad(): dev_max = max(float((act(t) - torch.relu(t)).abs().max()) for act in m.masknet.acts)
print(f'{src}: boxes of {len(x)} images; IoU rational vs plain CAM mean {iou.mean():.3f}, median {iou.median():.3f}, '
      f'identical {(iou > 0.999).float().mean() * 100:.1f} %; area {area(a).mean() / (H * W) * 100:.1f} % vs {area(b).mean() / (H * W) * 100:.1f} % of the image; '
      f'max |R - ReLU| on [-3, 3] {dev_max:.4f}')
