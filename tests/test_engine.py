"""The engine's events reach every method's loops: each method's own steps (the aggregation weights, the mask step,
the GAN, the synthesis, the exemplar pixels) report through `after_inner`, and the phase's epochs through `after_epoch`."""
import sys
from pathlib import Path
import torch
from cil_nb.data import make_synthetic, Scenario
from cil_nb.learner import Callback, get_method, run
from cil_nb.cli import load_methods
sys.path.insert(0, str(Path(__file__).parent))
from _dist_all import TINY

class Inner(Callback):
    def __init__(self): self.loops, self.epochs = {}, 0
    def after_inner(self, m, p, loop, step, losses):
        assert all(isinstance(v, float) for v in losses.values()), losses
        self.loops.setdefault(loop, set()).add(p.t)
    def after_epoch(self, m, p, ep, h): self.epochs += 1

def test_every_inner_loop_reports():
    torch.set_num_threads(1); load_methods()
    sc = Scenario(make_synthetic(n_classes=6, n_train=32, n_test=16, size=16), base=2, increment=2, seed=1993)
    want = {'aanets': 'alpha', 'cim': 'mask', 'genifer': 'gan', 'class_impression': 'synthesis', 'mnemonics': 'exemplars'}
    for name, loop in want.items():
        cb = Inner()
        run(get_method(name, epochs=1, batch_size=16, per_class=4, **TINY.get(name, {})), sc, device='cpu', seed=0,
            log=lambda s: None, progress=False, callbacks=[cb])
        assert loop in cb.loops and len(cb.loops[loop]) >= 2, (name, cb.loops)   # in two phases at least (the GAN trains after phases 0, 1)
        assert cb.epochs >= 3, name                                                # the phases' own epochs too
