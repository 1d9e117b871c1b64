"""Faults and bad input, second round: each ends in one line (what was wrong, what to do), a fitting exit code, nothing
lost, and a folder that --resume or a plain re-run continues. The process faults (orphaned bench workers, SIGTERM)
are in test_faults_proc.py."""
import errno, hashlib, io, json, os, re, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest, torch
from conftest import console
from test_runfolder import ENV, RUN, cil, inproc, one_line, phases   # noqa: F401 (inproc is a fixture)
from cil_nb.core import CILError, RunLock
from cil_nb.learner import Result, load_checkpoint, CKPT_VERSION


# 1. A full disk while torch writes a checkpoint (its zip writer turned ENOSPC into a RuntimeError)
def test_disk_full_in_torch_writer(tmp_path, inproc, monkeypatch):
    "The checkpoint's bytes hit ENOSPC: one line, exit 1, no half file, and the run goes on with --resume."
    import cil_nb.core as core
    real = os.fdopen
    class Full(io.RawIOBase):   # a file on a full disk: every write of a checkpoint fails as the kernel would
        def __init__(self, f): self.f = f
        def write(self, b): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        def __getattr__(self, k): return getattr(self.f, k)
        def close(self): self.f.close()
    def fdopen(fd, mode='r', *a, **k):
        f = real(fd, mode, *a, **k)
        return Full(f) if 'checkpoint' in os.readlink(f'/proc/self/fd/{fd}') and 'b' in mode else f
    monkeypatch.setattr(core.os, 'fdopen', fdopen)
    out = tmp_path / 'o'
    r = inproc(*RUN, '--out', str(out))
    one_line(r, 1, 'no space left on the device: ')
    assert 'checkpoint.pt: free some space, then continue with --resume' in r.stderr
    f = out / 'icarl'
    assert not list(f.glob('.*.tmp')) and not (f / 'checkpoint.pt').exists() and not (f / '.lock').exists()
    monkeypatch.setattr(core.os, 'fdopen', real)
    r = inproc(*RUN, '--out', str(out))                # nothing was finished: a plain re-run starts
    assert r.returncode == 0 and phases(f) == 5, r.stderr

def test_disk_full_real(tmp_path):
    "A real 3 MB tmpfs, nearly full (where this process may mount one): one line, no traceback."
    m = tmp_path / 'm'; m.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(m)], capture_output=True).returncode:
        pytest.skip('cannot mount a tmpfs here')
    try:
        (m / 'f').write_bytes(b'\0' * (2000 * 1024))
        r = cil(*RUN, '--out', str(m / 'run'))
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and 'no space left' in r.stderr, r.stderr
        assert not list((m / 'run' / 'icarl').glob('.*.tmp'))
    finally: subprocess.run(['umount', str(m)])


# 2. A diverging loss
def test_diverging_loss(tmp_path, inproc):
    "lr 1e6: the phase whose loss turns nan is named; the phases before it stay whole and in step; --overwrite starts again."
    out = tmp_path / 'o'; f = out / 'icarl'
    r = inproc(*RUN, '--set', 'lr=1000000', '--out', str(out))
    one_line(r, 2, 'training diverged in phase ')
    assert 'lower the learning rate (--set lr=..., now 1e+06)' in r.stderr and '--overwrite' in r.stderr
    t = int(re.search(r'diverged in phase (\d+), epoch \d+ \(', r.stderr).group(1))
    if t == 0: assert not (f / 'checkpoint.pt').exists()
    else: assert load_checkpoint(f / 'checkpoint.pt')['phase'] == t - 1 and phases(f) == t
    assert not (f / '.lock').exists()
    r = inproc(*RUN, '--out', str(out), '--overwrite')
    assert r.returncode == 0 and phases(f) == 5, r.stderr

@pytest.mark.parametrize('bad', ['T=0', 'gamma=nan', 'lr=inf', 'lr=nan', 'weight_decay=-1', 'momentum=-0.5'])
def test_settings_refused(tmp_path, inproc, bad):
    k = bad.split('=')[0]
    one_line(inproc(*RUN, '--set', bad, '--out', str(tmp_path / 'o')), 2, k)
    assert not (tmp_path / 'o').exists()

def test_results_with_nan_are_written(tmp_path):
    from cil_nb.metrics import CILMetrics
    r = Result('m', 'd', {}, [0, 1], [1, 1], 0, 'cpu', '', CILMetrics([1, 1]), history=[[{'loss': float('nan')}]],
               extras={'x': [float('inf'), 1.0]})
    r.save(tmp_path / 'r.json')
    d = json.loads((tmp_path / 'r.json').read_text())
    assert d['history'] == [[{'loss': None}]] and d['extras'] == {'x': [None, 1.0]}


# 3. The lock: many processes at once on a stale lock
def test_lock_race(tmp_path):
    "A stale lock, then 6 forked processes take the lock at the same instant, 8 times: never two holders at once."
    for trial in range(8):
        f = tmp_path / f't{trial}'; f.mkdir(); (f / '.lock').write_text('999999999 -\n')   # left by a dead run
        go = time.time() + 0.3; kids = []
        for i in range(6):
            pid = os.fork()
            if pid == 0:   # child: wait for the start, try, hold a moment, log the interval
                code = 1
                try:
                    while time.time() < go: pass
                    try:
                        with RunLock(f):
                            t0 = time.time(); time.sleep(0.05); t1 = time.time()
                            with open(tmp_path / f'held{trial}', 'a') as log: log.write(f'{t0} {t1}\n')
                    except CILError: pass
                    code = 0
                finally: os._exit(code)
            kids.append(pid)
        assert all(os.waitpid(k, 0)[1] == 0 for k in kids)
        spans = sorted(tuple(map(float, l.split())) for l in (tmp_path / f'held{trial}').read_text().splitlines())
        assert len(spans) >= 1 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans   # no overlap
        assert not (f / '.lock').exists()


# 5. Malformed MedMNIST files
def _npz(root, **change):
    from medmnist import INFO
    k = len(INFO['bloodmnist']['label']); rng = np.random.RandomState(0); a = {}
    for s, n in (('train', 12), ('val', 6), ('test', 6)):
        a[f'{s}_images'] = rng.randint(0, 256, (n, 28, 28, 3), dtype=np.uint8); a[f'{s}_labels'] = (np.arange(n) % k).reshape(-1, 1)
    a.update(change); a = {k2: v for k2, v in a.items() if v is not None}
    np.savez(root / 'bloodmnist.npz', **a)

@pytest.mark.parametrize('case', ['no_val_images', 'images_n_28_3', 'labels_too_big', 'object_array', 'not_zip', 'empty'])
def test_malformed_medmnist(tmp_path, inproc, case):
    if case == 'no_val_images': _npz(tmp_path, val_images=None)
    elif case == 'images_n_28_3': _npz(tmp_path, train_images=np.zeros((12, 28, 3), np.uint8))
    elif case == 'labels_too_big': _npz(tmp_path, test_labels=np.full((6, 1), 8))
    elif case == 'object_array': _npz(tmp_path, train_labels=np.array([[1], 'x'] * 6, dtype=object))
    elif case == 'not_zip': (tmp_path / 'bloodmnist.npz').write_text('not a zip file')
    else: (tmp_path / 'bloodmnist.npz').write_bytes(b'')
    r = inproc('--method', 'finetune', '--dataset', 'medmnist:bloodmnist', '--root', str(tmp_path), '--epochs', '1',
               '--out', str(tmp_path / 'o'))
    one_line(r, 2, 'MedMNIST file ')
    assert 'download it again' in r.stderr and not (tmp_path / 'o').exists()


# 6. A decompression bomb in a folder data set
def test_huge_image(tmp_path, inproc, monkeypatch):
    from PIL import Image
    root = tmp_path / 'imgs'
    for c in range(2):
        (root / f'c{c}').mkdir(parents=True)
        for i in range(3): Image.fromarray(np.full((16, 16), 90 * c + i, np.uint8)).save(root / f'c{c}' / f'{i}.png')
    Image.new('L', (400, 400)).save(root / 'c1' / 'huge.png')
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 20_000)   # 400 x 400 is then a bomb (PIL refuses above twice the limit)
    r = inproc('--method', 'finetune', '--dataset', f'folder:{root}', '--epochs', '1', '--out', str(tmp_path / 'o'))
    one_line(r, 2, 'huge.png is too large to decode safely')


# 7. and 11. Temporary files: only the package's own, also under pictures/
def test_own_tmp_files_only(tmp_path, inproc):
    out = tmp_path / 'd'; f = out / 'icarl'; (f / 'pictures').mkdir(parents=True)
    (f / '.my-notes.tmp').write_text('mine'); (out / '.my-notes.tmp').write_text('mine')
    (f / '.checkpoint.pt.x1y2.cil_nb.tmp').write_bytes(b'half'); (f / 'pictures' / '.phase0_exemplars.png.z9.cil_nb.tmp').write_bytes(b'half')
    r = inproc(*RUN, '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert (f / '.my-notes.tmp').read_text() == 'mine' and (out / '.my-notes.tmp').read_text() == 'mine'
    assert not list(f.rglob('*.cil_nb.tmp')) and 'removed 2 temporary file(s)' in r.stdout


# 8. Checkpoints with a valid checksum and wrong contents
def _resign(path, **change):
    ck = torch.load(path, weights_only=True)
    p = torch.load(io.BytesIO(ck['payload'].numpy().tobytes()), weights_only=True)
    for k, v in change.items(): p[k] = v(p[k]) if callable(v) else v
    buf = io.BytesIO(); torch.save(p, buf); b = bytearray(buf.getbuffer())
    torch.save({'version': CKPT_VERSION, 'sha256': hashlib.sha256(b).hexdigest(), 'payload': torch.frombuffer(b, dtype=torch.uint8)}, path)

BAD_CONTENTS = {'data': 'x', 'runtime': None, 'phase': -1, 'model': {}, 'rng': None, 'head_sizes': lambda h: h + [2],
                'phase#str': '1', 'old_model': {}, 'config': [1], 'extra': {'nonsense': 1}, 'phase#big': 99, 'result': '[1]'}

@pytest.fixture(scope='module')
def killed_run(tmp_path_factory):
    "A run folder whose run was killed after phase 1 (made once, copied by each test)."
    out = tmp_path_factory.mktemp('killed') / 'o'
    cil(*RUN, '--out', str(out), env={'KILL_AFTER_SAVE': '1'})
    assert load_checkpoint(out / 'icarl' / 'checkpoint.pt')['phase'] == 1
    return out

@pytest.mark.parametrize('what', sorted(BAD_CONTENTS))
def test_resigned_checkpoint(tmp_path, inproc, killed_run, what):
    import shutil
    out = tmp_path / 'o'; f = out / 'icarl'; shutil.copytree(killed_run, out)
    _resign(f / 'checkpoint.pt', **{what.split('#')[0]: BAD_CONTENTS[what]})
    r = inproc(*RUN, '--out', str(out), '--resume')
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (what, r.stderr)
    assert 'checkpoint' in r.stderr and '--overwrite' in r.stderr, r.stderr
    assert not (f / '.lock').exists()
    if what == 'model':   # what the line says works
        r = inproc(*RUN, '--out', str(out), '--overwrite')
        assert r.returncode == 0 and phases(f) == 5, r.stderr


# 9. Stray tracebacks
def test_seed_out_of_range(tmp_path, inproc):
    one_line(inproc(*RUN, '--seed', '99999999999999999999', '--out', str(tmp_path / 'o')), 2, '--seed must be a whole number')
    one_line(inproc(*RUN, '--order_seed', '99999999999999999999', '--out', str(tmp_path / 'o')), 2, '--order_seed')
    one_line(inproc('--method', 'finetune', '--dataset', 'synthetic', '--seeds', '0,99999999999999999999', '--out',
                    str(tmp_path / 'b'), prog='cil_nb_bench'), 2, '--seeds must be whole numbers')

def test_fashion_idx_without_images(tmp_path, inproc):
    from cil_nb.data import write_idx, FASHION_FILES
    for k, name in FASHION_FILES.items():
        write_idx(tmp_path / (name + '.gz'), np.zeros((0, 28, 28) if k.endswith('_x') else (0,), np.uint8))
    one_line(inproc('--dataset', 'fashion-mnist', '--root', str(tmp_path), '--out', str(tmp_path / 'o')), 2, 'hold no images')

def test_bench_resume_odd_results(tmp_path, inproc):
    out = tmp_path / 'b'
    args = ['--method', 'finetune', '--dataset', 'synthetic', '--per_class', '3', '--epochs', '1', '--seeds', '0',
            '--no_pictures', '--threads', '1', '--out', str(out)]
    assert inproc(*args, prog='cil_nb_bench').returncode == 0
    (out / 'finetune' / 'seed0' / 'results.json').write_text('[1]')
    r = inproc(*args, '--resume', prog='cil_nb_bench')
    assert r.returncode in (0, 2) and 'Traceback' not in r.stderr, r.stderr
    if r.returncode == 2: assert len(r.stderr.strip().splitlines()) == 1

def test_size_too_big(tmp_path, inproc, monkeypatch):
    import cil_nb.data as D
    monkeypatch.setattr(D, 'free_memory_bytes', lambda: 2**30)   # 1 GiB free: 1,797 digits at 3000 px need 15 GiB
    one_line(inproc('--dataset', 'digits', '--size', '3000', '--out', str(tmp_path / 'o')), 2, '--size 3000 on digits needs')

def test_ctrl_c_while_importing_torch(tmp_path):
    "Ctrl-C a moment after the start, while `import torch` loads: one line, exit 130, not a traceback."
    for delay in (0.4, 0.8):
        p = subprocess.Popen([*console('cil_nb_run', 'cil_nb.cli'), *RUN, '--out', str(tmp_path / 'o')], env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay); p.send_signal(signal.SIGINT); _, err = p.communicate(timeout=120)
        assert p.returncode == 130 and len(err.strip().splitlines()) == 1 and 'interrupted' in err, (delay, p.returncode, err)


# 12. Misleading messages and silent fallbacks
def test_results_without_checkpoint(tmp_path, inproc):
    out = tmp_path / 'o'
    assert inproc(*RUN, '--out', str(out)).returncode == 0
    (out / 'icarl' / 'checkpoint.pt').unlink()
    one_line(inproc(*RUN, '--out', str(out)), 2, 'no checkpoint.pt to continue from: start again with --overwrite')   # cli's check
    one_line(inproc(*RUN, '--out', str(out), '--resume'), 2, 'again with --overwrite')
    assert '--resume' not in inproc(*RUN, '--out', str(out)).stderr                 # no advice that leads back here

def test_root_missing_no_fallback(tmp_path, inproc):
    one_line(inproc('--dataset', 'fashion-mnist', '--root', str(tmp_path / 'nope'), '--out', str(tmp_path / 'o')), 2,
             f'--root {tmp_path / "nope"} is not a folder')
    (tmp_path / 'empty').mkdir()
    one_line(inproc('--dataset', 'fashion-mnist', '--root', str(tmp_path / 'empty'), '--out', str(tmp_path / 'o')), 2,
             'Fashion-MNIST files not found in')

def test_out_empty(tmp_path, inproc, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line(inproc(*RUN, '--out', ''), 2, '--out must name a folder')
    assert list(tmp_path.iterdir()) == []

def test_lock_holding_zero(tmp_path, inproc):
    out = tmp_path / 'o'; (out / 'icarl').mkdir(parents=True)
    for left in ('0\n', '', 'garbage'):
        (out / 'icarl' / '.lock').write_text(left); (out / '.lock').write_text(left)
        r = inproc(*RUN, '--out', str(out), '--overwrite')
        assert r.returncode == 0, r.stderr
        assert not (out / 'icarl' / '.lock').exists()
