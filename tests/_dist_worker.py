"""Run by tests/test_distributed.py under torchrun: one `run` through the Python API, then every process writes what it
ended with (scores, a hash of its model and memory) to <out>/rank<r>.json, so that the test can check that they agree."""
import sys, json, hashlib
from pathlib import Path
import torch
from cil_nb.core import rank, world_size, close_distributed
from cil_nb.data import make_synthetic, Scenario
from cil_nb.learner import get_method, run
from cil_nb.cli import load_methods

def sha(ts) -> str:
    h = hashlib.sha256()
    for t in ts: h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]

if __name__ == '__main__':
    name, out, epochs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    resume = len(sys.argv) > 4 and sys.argv[4] == 'resume'
    load_methods()
    sc = Scenario(make_synthetic(n_classes=6, n_train=40, n_test=20, size=16), base=2, increment=2, seed=1993)
    m = get_method(name, epochs=epochs)
    res = run(m, sc, device='cpu', seed=0, out=out / name, resume=resume, log=lambda *a: None, progress=False)
    mem = m.memory.tensors() if m.uses_memory else (None, None)
    (out / f'rank{rank()}.json').write_text(json.dumps({
        'world': world_size(), 'summary': res.to_dict()['summary'], 'acc': [float(a) for a in res.metrics.acc('cnn')],
        'model': sha(m.model.state_dict().values()), 'memory': sha([t for t in mem if t is not None]),
        'processes': res.runtime.get('processes'), 'history': res.history}))
    close_distributed()   # leave the process group before exiting (else gloo's threads may abort the process)
