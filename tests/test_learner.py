"The shared loop: a run killed during phase 2 resumes to the same accuracy matrix; checkpoints are safe and checked."
import io, os, signal, subprocess, sys, textwrap, time
from pathlib import Path
import numpy as np, pytest, torch
from cil_nb.core import CILError
from cil_nb.data import Scenario, make_synthetic
from cil_nb.learner import run, get_method, load_checkpoint, Result
import cil_nb.methods.baselines  # registers the baselines

SETUP = '''
import torch; torch.set_num_threads(1)
from cil_nb.data import Scenario, make_synthetic
from cil_nb.learner import get_method
import cil_nb.methods.baselines
sc = Scenario(make_synthetic(n_classes=8, n_train=30, n_test=10, size=16), base=2, increment=2)
method = lambda: get_method('icarl', epochs=2, batch_size=16, per_class=5)
'''

def _R(res): return {h: np.nan_to_num(res.metrics.R(h), nan=-1) for h in res.heads}

def test_resume_after_kill_gives_the_same_matrix(tmp_path):
    torch.set_num_threads(1)
    ns = {}; exec(SETUP, ns)
    full = run(ns['method'](), ns['sc'], device='cpu', seed=3, log=lambda s: None)
    marker, out = tmp_path / 'in_phase_2', tmp_path / 'run'
    script = SETUP + textwrap.dedent(f'''
        import time
        from pathlib import Path
        from cil_nb.learner import run
        m = method(); fit = m.fit_phase
        def slow_fit(p, progress=None):
            if p.t == 2: Path({str(marker)!r}).write_text('2'); time.sleep(120)
            return fit(p, progress)
        m.fit_phase = slow_fit
        run(m, sc, device='cpu', seed=3, out={str(out)!r}, log=lambda s: None)
    ''')
    proc = subprocess.Popen([sys.executable, '-c', script], env={**os.environ, 'IN_TEST': '1'})
    try:
        t0 = time.time()
        while not marker.exists():
            assert proc.poll() is None, 'the run ended before reaching phase 2'
            assert time.time() - t0 < 240, 'phase 2 never started'
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL); proc.wait()
    finally:
        if proc.poll() is None: proc.kill()
    assert load_checkpoint(out / 'checkpoint.pt')['phase'] == 1          # phases 0 and 1 were saved, phase 2 was not
    assert len(Result.load(out / 'results.json').metrics.acc('cnn')) == 2
    assert not [p for p in out.iterdir() if p.name.endswith('.tmp')]     # no half-written file left behind
    resumed = run(ns['method'](), ns['sc'], device='cpu', seed=3, out=out, resume=True, log=lambda s: None)
    for h in full.heads: np.testing.assert_array_equal(_R(resumed)[h], _R(full)[h])
    assert load_checkpoint(out / 'checkpoint.pt')['phase'] == 3

def test_checkpoint_errors(tmp_path):
    ns = {}; exec(SETUP, ns)
    run(ns['method'](), ns['sc'], device='cpu', seed=0, out=tmp_path, log=lambda s: None, phases=1)
    with pytest.raises(CILError, match='different method'):
        run(get_method('lucir', epochs=2, batch_size=16, per_class=5), ns['sc'], device='cpu', seed=0, out=tmp_path, resume=True)
    other = Scenario(ns['sc'].data, base=4, increment=2)
    with pytest.raises(CILError, match='different order|different phase_sizes'):
        run(ns['method'](), other, device='cpu', seed=0, out=tmp_path, resume=True)
    with pytest.raises(CILError, match='no checkpoint'):
        run(ns['method'](), ns['sc'], device='cpu', seed=0, out=tmp_path / 'none', resume=True)
    (tmp_path / 'checkpoint.pt').write_bytes((tmp_path / 'checkpoint.pt').read_bytes()[:100])   # truncated file
    with pytest.raises(CILError, match='corrupt'):
        run(ns['method'](), ns['sc'], device='cpu', seed=0, out=tmp_path, resume=True)

def test_checkpoint_loads_weights_only(tmp_path):
    ns = {}; exec(SETUP, ns)
    run(ns['method'](), ns['sc'], device='cpu', seed=0, out=tmp_path, log=lambda s: None, phases=2)
    outer = torch.load(tmp_path / 'checkpoint.pt', weights_only=True)       # the file and the payload inside it
    assert set(outer) == {'version', 'sha256', 'payload'}
    ck = torch.load(io.BytesIO(outer['payload'].numpy().tobytes()), weights_only=True)
    assert load_checkpoint(tmp_path / 'checkpoint.pt')['phase'] == ck['phase']
    assert ck['phase'] == 1 and ck['order'] == ns['sc'].order and ck['head_sizes'] == [2, 2]
    assert sum(len(x) for x in ck['extra']['memory']['x']) == 4 * 5

def test_unknown_method():
    with pytest.raises(CILError, match='available are'): get_method('ewc')
