"""The run folder as a contract, and failures a user can cause (issue 14), each through the command line in a subprocess:
a lock (live holder refused, stale lock taken over), a folder holding a run refused without --resume/--overwrite,
results.json always matching the checkpoint after --resume, nothing to resume, checkpoints checked (checksum, data,
keys, thread count), cil_nb_bench --resume, a full disk, an unreadable image, Ctrl-C, leftover temp files, the umask."""
import re
import json, os, signal, subprocess, sys, time, errno
from pathlib import Path
import pytest, torch
from conftest import console

ENV = {**os.environ, 'IN_TEST': '1', 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
# A wrapper that runs a console command in this interpreter with a fault injected: KILL_AFTER_SAVE=[seed:]phase kills the
# process (SIGKILL) right after that phase's checkpoint is in place (before results.json follows); READY=path gets the number of each phase as its training starts.
WRAP = r'''
import os, sys, signal, errno
from pathlib import Path
import cil_nb.learner as L
kill = os.environ.get('KILL_AFTER_SAVE')
if kill:
    real = L.save_checkpoint
    def save(path, method, t, result):
        real(path, method, t, result)
        seed, _, ph = kill.rpartition(':')
        if str(t) == ph and (not seed or f'seed{seed}' in str(path)): os.kill(os.getpid(), signal.SIGKILL)
    L.save_checkpoint = save
if os.environ.get('READY'):
    fit = L.Method.fit_phase
    def fit_phase(self, p, progress=None):
        Path(os.environ['READY']).write_text(str(p.t)); return fit(self, p, progress)
    L.Method.fit_phase = fit_phase
prog, args = sys.argv[1], sys.argv[2:]
if prog == 'cil_nb_run': from cil_nb.cli import cil_nb_run as f
else: from cil_nb.benchmark import cil_nb_bench as f
f(args)
'''
RUN = ['--method', 'icarl', '--dataset', 'synthetic', '--per_class', '3', '--epochs', '1', '--threads', '1']

def cil(*args, prog='cil_nb_run', env=None, **kw):
    "The command in a subprocess, faults from `env` (see WRAP)."
    e = {**ENV, **(env or {})}
    cmd = [sys.executable, '-c', WRAP, prog, *args] if env else [*console(prog, 'cil_nb.cli' if prog == 'cil_nb_run' else 'cil_nb.benchmark'), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=e, **kw)

class R:
    "What a command gave: returncode, stdout, stderr (like subprocess.CompletedProcess)."
    def __init__(self, returncode, stdout, stderr): self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

@pytest.fixture
def inproc(capsys):
    "Run cil_nb_run / cil_nb_bench in this process (no start-up cost): `inproc(*args, prog=...)` -> R."
    from cil_nb.cli import cil_nb_run
    from cil_nb.benchmark import cil_nb_bench
    n = torch.get_num_threads()
    def call(*args, prog='cil_nb_run'):
        code = 0
        try: (cil_nb_run if prog == 'cil_nb_run' else cil_nb_bench)(list(args))
        except SystemExit as e: code = e.code
        finally: torch.set_num_threads(n)
        o, e = capsys.readouterr(); return R(code, o, e)
    return call

def one_line(r, code, msg):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and msg in lines[0], (r.returncode, r.stderr)

def phases(folder): return len(json.loads((folder / 'results.json').read_text())['phase_seconds'])

def test_lock_live_and_stale(tmp_path, inproc):
    out = tmp_path / 'o'
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from cil_nb.core import RunLock; RunLock(sys.argv[1]).acquire(); '
                               'print("locked", flush=True); time.sleep(120)', str(out)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        one_line(inproc(*RUN, '--out', str(out)), 2, f'is in use by another run (pid {holder.pid})')
        holder.send_signal(signal.SIGKILL); holder.wait()            # killed: its lock is stale now
        assert (out / '.lock').read_text().split()[0] == str(holder.pid)
        r = inproc(*RUN, '--out', str(out))
        assert r.returncode == 0, r.stderr
        assert phases(out / 'icarl') == 5 and not (out / '.lock').exists() and not (out / 'icarl' / '.lock').exists()
    finally:
        if holder.poll() is None: holder.kill()

def test_refuse_overwrite_resume_and_stale_results(tmp_path, inproc):
    out = tmp_path / 'o'; f = out / 'icarl'
    # killed between the last checkpoint's rename and the results' rename: results.json is one phase behind
    r = cil(*RUN, '--out', str(out), env={'KILL_AFTER_SAVE': '4'})
    assert r.returncode == -signal.SIGKILL and phases(f) == 4
    one_line(inproc(*RUN, '--out', str(out)), 2, 'already holds a partial run (4 of 5 phases): continue with --resume, start again with --overwrite')
    r = inproc(*RUN, '--out', str(out), '--resume')
    assert r.returncode == 0 and 'resumed from' in r.stdout and phases(f) == 5, r.stderr
    done = json.loads((f / 'results.json').read_text())
    one_line(inproc(*RUN, '--out', str(out)), 2, 'already holds a finished run (5 of 5 phases)')
    (f / 'results.json').unlink()                                      # a deleted results.json is recreated by --resume
    assert inproc(*RUN, '--out', str(out), '--resume').returncode == 0
    assert json.loads((f / 'results.json').read_text())['metrics'] == done['metrics']
    (f / '.results.json.x1y2z3.cil_nb.tmp').write_text('{"half": ')          # left by a write that was killed
    r = inproc(*RUN, '--out', str(out), '--overwrite')
    assert r.returncode == 0 and phases(f) == 5 and not list(f.glob('.*.tmp')), r.stderr
    one_line(inproc(*RUN, '--out', str(tmp_path / 'empty'), '--resume'), 2, 'nothing to resume')
    assert not (tmp_path / 'empty').exists()

def test_resume_checks_data_checksum_keys_and_threads(tmp_path, inproc):
    out = tmp_path / 'o'; ck = out / 'icarl' / 'checkpoint.pt'
    args = ['--method', 'icarl', '--dataset', 'digits', '--size', '16', '--per_class', '3', '--epochs', '1', '--out', str(out)]
    assert cil(*args, '--threads', '1', env={'KILL_AFTER_SAVE': '1'}).returncode == -signal.SIGKILL
    other = [a if a != '16' else '20' for a in args]
    one_line(inproc(*other, '--threads', '1', '--resume'), 2, 'does not match this run (different data (size, train, test')
    good = ck.read_bytes(); b = bytearray(good); k = len(b) // 2
    b[k:k + 64] = bytes(255 - x for x in b[k:k + 64]); ck.write_bytes(bytes(b))   # 64 flipped bytes in the weights
    one_line(inproc(*args, '--threads', '1', '--resume'), 2, 'is damaged (its checksum does not match its contents)')
    from cil_nb.learner import load_checkpoint, CKPT_VERSION
    import hashlib, io
    ck.write_bytes(good); p = load_checkpoint(ck); del p['model']
    buf = io.BytesIO(); torch.save(p, buf); raw = bytearray(buf.getbuffer())
    torch.save({'version': CKPT_VERSION, 'sha256': hashlib.sha256(raw).hexdigest(), 'payload': torch.frombuffer(raw, dtype=torch.uint8)}, ck)
    one_line(inproc(*args, '--threads', '1', '--resume'), 2, 'lacks model')
    ck.write_bytes(good)
    r = inproc(*args, '--threads', '2', '--resume')                       # another thread count: a warning, recorded
    assert r.returncode == 0 and 'warning: resumed after phase 1 with 2 threads; phases 0-1 ran with 1' in r.stdout, r.stderr
    res = json.loads((out / 'icarl' / 'results.json').read_text())
    assert len(res['warnings']) == 1 and res['runtime']['threads'] == 1 and len(res['phase_seconds']) == 5

def test_bench_resume(tmp_path, inproc):
    out = tmp_path / 'b'
    args = ['--method', 'finetune,icarl:selection=random', '--dataset', 'synthetic', '--per_class', '3', '--epochs', '1',
            '--seeds', '0,1', '--no_pictures', '--threads', '1', '--out', str(out)]
    r = cil(*args, prog='cil_nb_bench', env={'KILL_AFTER_SAVE': '1:2'})   # killed in finetune's seed 1, after phase 2
    assert r.returncode == -signal.SIGKILL
    first = json.loads((out / 'finetune' / 'seed0' / 'results.json').read_text())
    one_line(inproc(*args, prog='cil_nb_bench'), 2, 'already holds a finished run')
    r = inproc(*args, '--resume', prog='cil_nb_bench')
    assert r.returncode == 0, r.stderr
    assert re.search(r'^finetune +seed 0:', r.stdout, re.M) and '(finished before)' in r.stdout and '(resumed after phase 2)' in r.stdout
    assert r.stdout.count('icarl:selection=random seed') == 2 and '| icarl:selection=random | 2 |' in r.stdout
    assert json.loads((out / 'finetune' / 'seed0' / 'results.json').read_text())['extras'] == first['extras']   # not re-run
    for f in ('finetune/seed0', 'finetune/seed1', 'icarl_selection=random/seed0', 'icarl_selection=random/seed1'):
        assert phases(out / f) == 5
    assert 'Command: `cil_nb_bench --method finetune,icarl:selection=random' in (out / 'results.md').read_text()

def test_disk_full(tmp_path, inproc, monkeypatch):
    "The disk fills up during phase 1 (the third write): one line, exit 1, whole files only, then --resume goes on."
    out = tmp_path / 'o'; left = [2]; real = os.fsync
    def fsync(fd):
        left[0] -= 1
        if left[0] < 0: raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(os, 'fsync', fsync)
    r = inproc(*RUN, '--out', str(out))
    one_line(r, 1, 'no space left on the device: ')
    assert 'checkpoint.pt: free some space, then continue with --resume' in r.stderr
    f = out / 'icarl'
    assert not list(f.glob('.*.tmp')) and not (f / '.lock').exists() and not (out / '.lock').exists()
    from cil_nb.learner import load_checkpoint
    assert load_checkpoint(f / 'checkpoint.pt')['phase'] == 0 and phases(f) == 1    # phase 0, whole and in step
    monkeypatch.setattr(os, 'fsync', real)
    r = inproc(*RUN, '--out', str(out), '--resume')
    assert r.returncode == 0 and phases(f) == 5, r.stderr

def test_unreadable_image(tmp_path, inproc):
    from PIL import Image
    import numpy as np
    root = tmp_path / 'imgs'
    for c in range(4):
        (root / f'c{c}').mkdir(parents=True)
        for i in range(4): Image.fromarray(np.full((16, 16), 60 * c + i, np.uint8)).save(root / f'c{c}' / f'{i}.png')
    (root / 'c2' / 'bad.png').write_bytes(b'not a png at all')
    r = inproc('--method', 'finetune', '--dataset', f'folder:{root}', '--epochs', '1', '--out', str(tmp_path / 'o'))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith('cil_nb_run: error:') and 'bad.png' in r.stderr
    assert not (tmp_path / 'o').exists()

def test_ctrl_c(tmp_path):
    out, ready = tmp_path / 'o', tmp_path / 'ready'
    cmd = [sys.executable, '-c', WRAP, 'cil_nb_run', *[a if a != '1' or i != RUN.index('--epochs') + 1 else '30' for i, a in enumerate(RUN)], '--out', str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**ENV, 'READY': str(ready)})
    try:
        t0 = time.time()
        while not (ready.exists() and ready.read_text() == '1'):
            assert p.poll() is None and time.time() - t0 < 240, p.stderr.read() if p.poll() is not None else 'no phase 1'
            time.sleep(0.05)
        p.send_signal(signal.SIGINT); o, e = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130 and e.strip().splitlines() == ['cil_nb_run: interrupted; continue with --resume'], e
    f = out / 'icarl'
    assert phases(f) == 1 and not list(f.glob('.*.tmp')) and not (f / '.lock').exists() and not (out / '.lock').exists()

def test_files_follow_the_umask(tmp_path, inproc):
    out = tmp_path / 'o'; old = os.umask(0o027)
    try: r = inproc(*RUN, '--out', str(out))
    finally: os.umask(old)
    assert r.returncode == 0, r.stderr
    for name in ('results.json', 'checkpoint.pt', 'curves.png', 'accuracy_matrix.png'):
        assert (out / 'icarl' / name).stat().st_mode & 0o777 == 0o640, name
