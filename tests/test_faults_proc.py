"""Process faults of issue 33, each through the command line in a subprocess: `kill -9` of `cil_nb_bench --jobs 2` takes its
workers with it, and SIGTERM of `cil_nb_run` or `cil_nb_bench --jobs 2` ends with one line, exit 143 and no lock left;
after each, `--resume` finishes the runs."""
import glob, os, signal, subprocess, sys, time
from pathlib import Path
from test_runfolder import ENV, WRAP, RUN, cil, phases

BENCH = ['--method', 'finetune,icarl', '--dataset', 'synthetic', '--per_class', '3', '--seeds', '0,1', '--jobs', '2',
         '--threads', '1', '--no_pictures']
FOLDERS = ('finetune/seed0', 'finetune/seed1', 'icarl/seed0', 'icarl/seed1')

def descendants(pid) -> set:
    "Every process below `pid` (its children, theirs, ...), from /proc/<pid>/task/*/children."
    out, todo = set(), [pid]
    while todo:
        for f in glob.glob(f'/proc/{todo.pop()}/task/*/children'):
            try: kids = {int(k) for k in open(f).read().split()} - out
            except OSError: continue
            out |= kids; todo += kids
    return out

def alive(pids) -> list:
    "The pids that still run (a zombie waiting for its new parent to reap it counts as gone)."
    def up(p):
        try: return open(f'/proc/{p}/stat').read().rpartition(')')[2].split()[0] != 'Z'
        except OSError: return False
    return [p for p in pids if up(p)]

def start(prog, args, out, tmp_path, **env):
    "The command in the background (stderr to a file: orphaned workers would keep a pipe open)."
    err = open(tmp_path / f'{prog}.err', 'w+')
    p = subprocess.Popen([sys.executable, '-c', WRAP, prog, *args, '--out', str(out)], stdout=subprocess.DEVNULL, stderr=err,
                         text=True, env={**ENV, **env})
    return p, err

def wait_for(p, cond, what, limit=240):
    t0 = time.time()
    while not cond():
        assert p.poll() is None and time.time() - t0 < limit, f'no {what} (exit {p.poll()})'
        time.sleep(0.05)

def saved(out): return lambda: bool(glob.glob(f'{out}/*/seed*/checkpoint.pt'))   # a worker is running and has saved a phase

def resumed(prog, args, out):
    r = cil(*args, '--out', str(out), '--resume', prog=prog)
    assert r.returncode == 0 and 'Traceback' not in r.stderr and not r.stderr.strip(), r.stderr
    return r

def test_kill9_bench_takes_its_workers(tmp_path):
    out = tmp_path / 'b'; args = [*BENCH, '--epochs', '40']    # each run's phases 1-4 take longer than the 3 s allowed below
    p, err = start('cil_nb_bench', args, out, tmp_path)
    try:
        wait_for(p, saved(out), 'saved phase')
        kids = descendants(p.pid); assert len(kids) >= 2, kids    # the two workers (and multiprocessing's resource tracker)
        p.send_signal(signal.SIGKILL); p.wait(timeout=30)
        t0 = time.time()
        while alive(kids) and time.time() - t0 < 3: time.sleep(0.05)
        assert not alive(kids), f'workers left running after kill -9 of their parent: {alive(kids)}'
    finally:
        if p.poll() is None: p.kill()
        for k in alive(descendants(p.pid)): os.kill(k, signal.SIGKILL)
    assert p.returncode == -signal.SIGKILL
    resumed('cil_nb_bench', args, out)
    for f in FOLDERS: assert phases(out / f) == 5, f

def stopped(p, err, prog):
    "SIGTERM: exit 143 and one line on stderr, `prog: ...resume`."
    p.send_signal(signal.SIGTERM); p.wait(timeout=120)
    err.seek(0); e = err.read(); lines = e.strip().splitlines()
    assert p.returncode == 143 and len(lines) == 1 and lines[0].startswith(f'{prog}: ') and 'resume' in lines[0], (p.returncode, e)

def test_sigterm_run(tmp_path):
    out, ready = tmp_path / 'o', tmp_path / 'ready'
    args = [a if a != '1' or i != RUN.index('--epochs') + 1 else '30' for i, a in enumerate(RUN)]
    p, err = start('cil_nb_run', args, out, tmp_path, READY=str(ready))
    try:
        wait_for(p, lambda: ready.exists() and ready.read_text() == '1', 'phase 1')   # phase 0 is saved
        stopped(p, err, 'cil_nb_run')
    finally:
        if p.poll() is None: p.kill()
    f = out / 'icarl'
    assert phases(f) == 1 and not list(out.rglob('.lock')) and not list(f.glob('.*.tmp'))
    resumed('cil_nb_run', args, out)
    assert phases(f) == 5

def test_sigterm_bench_jobs(tmp_path):
    out = tmp_path / 'b'; args = [*BENCH, '--epochs', '8']
    p, err = start('cil_nb_bench', args, out, tmp_path)
    try:
        wait_for(p, saved(out), 'saved phase')
        kids = descendants(p.pid); assert len(kids) >= 2, kids
        stopped(p, err, 'cil_nb_bench')
        t0 = time.time()
        while alive(kids) and time.time() - t0 < 5: time.sleep(0.05)
        assert not alive(kids), alive(kids)
    finally:
        if p.poll() is None: p.kill()
    assert not list(out.rglob('.lock')) and not list(out.rglob('.*.tmp')), list(out.rglob('.*'))
    resumed('cil_nb_bench', args, out)
    for f in FOLDERS: assert phases(out / f) == 5, f
