"""Mnemonics' optimised exemplars beside the herded images they started from, and the change between them. Usage:
    python bench/mnemonics_picture.py <bench out>/mnemonics/seed<S> OUT.png [classes a row, default 4] [images a class, default 8]
for a finished run of README's Fashion-MNIST protocol (--train_per_class 500). Each group of three rows is one class:
the herded originals, the exemplars after the bilevel step, and |difference| x 10 (white: a change of 0.1 or more)."""
import sys, torch
from pathlib import Path
from cil_nb.cli import prepare
from cil_nb.learner import load_checkpoint
from cil_nb.pictures import save_picture
if len(sys.argv) < 3 or not (Path(sys.argv[1]) / 'checkpoint.pt').exists():
    sys.exit('usage: python bench/mnemonics_picture.py <finished mnemonics run folder with checkpoint.pt> OUT.png [classes] [per class]')
src, out = Path(sys.argv[1]), Path(sys.argv[2])
n_cls, k = (int(sys.argv[3]) if len(sys.argv) > 3 else 4), (int(sys.argv[4]) if len(sys.argv) > 4 else 8)
_, sc, _, _ = prepare('mnemonics', 'fashion-mnist', train_per_class=500, out=str(src.parent.parent))
mem = load_checkpoint(src / 'checkpoint.pt')['extra']['memory']
names, rows = sc.class_names, []
for c in range(n_cls):
    opt = mem['x'][c][:k].float(); orig = sc.data.train_x[mem['idx'][c][:k]].float() / 255
    rows += [orig, opt.clamp(0, 1), ((opt - orig).abs() * 10).clamp(0, 1)]
    print(f'{names[c]}: mean |change| {float((opt - orig).abs().mean()):.4f}, max {float((opt - orig).abs().max()):.4f} (pixels in [0, 1])')
save_picture((torch.cat(rows), k), out, title='Mnemonics (Fashion-MNIST, seed 0): herded, optimised, |change| x 10, three rows a class')
print(f'wrote {out}')
