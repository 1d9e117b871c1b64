"""Run by tests/test_distributed.py under torchrun: every registered method, tiny, through `run`; each process writes
what it ended with (scores, hashes of its model and memory, the loss history) to <out>/<method>.rank<r>.json, so that
the test can check that all ten methods run split over processes and that the processes agree."""
import sys, json
from pathlib import Path
import torch
from cil_nb.core import rank, close_distributed
from cil_nb.data import make_synthetic, Scenario
from cil_nb.learner import get_method, run
from cil_nb.cli import load_methods
sys.path.insert(0, str(Path(__file__).parent))
from _dist_worker import sha

# small enough to take seconds each: one epoch, a few steps of every inner loop
TINY = {'genifer': dict(gan_steps=4, gan_batch=8, r1_every=2), 'class_impression': dict(syn_per_class=4, syn_batch=8, syn_iters=5),
        'mnemonics': dict(outer_iters=1, outer_batch=8, inner_steps=1), 'cim': dict(compress_epochs=1), 'foster': dict(compress_epochs=1)}
NAMES = ['finetune', 'joint', 'icarl', 'lucir', 'foster', 'cim', 'mnemonics', 'aanets', 'genifer', 'class_impression']

if __name__ == '__main__':
    out = Path(sys.argv[1]); load_methods()
    sc = Scenario(make_synthetic(n_classes=6, n_train=32, n_test=16, size=16), base=2, increment=2, seed=1993)
    for name in NAMES:
        m = get_method(name, epochs=1, batch_size=16, per_class=4, **TINY.get(name, {}))
        res = run(m, sc, device='cpu', seed=0, out=out / name, log=lambda *a: None, progress=False)
        mem = m.memory.tensors() if m.uses_memory and len(m.memory) else (None, None)
        (out / f'{name}.rank{rank()}.json').write_text(json.dumps({
            'summary': res.to_dict()['summary'], 'model': sha(m.model.state_dict().values()),
            'memory': sha([t for t in mem if t is not None]), 'processes': res.runtime.get('processes'), 'history': res.history}))
    close_distributed()
