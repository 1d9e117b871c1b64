"""Several processes on one CPU with torch.distributed (gloo): `torchrun ... cil_nb_run` works unchanged, its results match
a one-process run, every process ends with the same model, memory and scores, resume works, every method runs split over
processes, and a method that says it cannot be split refuses with one line. Two processes, one thread each, a tiny synthetic set: well under two minutes."""
import os, sys, json, subprocess
from pathlib import Path
import pytest
from cil_nb.cli import cil_nb_run
from cil_nb.learner import run, Result

HERE = Path(__file__).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'IN_TEST': '1'}

def console_script() -> str:
    "The installed `cil_nb_run` (a Python script that torchrun can run; a pyenv shim on PATH is a shell script, so look beside python first)."
    p = Path(sys.executable).parent / 'cil_nb_run'
    if p.exists(): return str(p)
    import shutil
    w = shutil.which('cil_nb_run')
    if w is None or not Path(w).read_text(errors='ignore').startswith('#!') or 'python' not in Path(w).read_text(errors='ignore').split('\n')[0]:
        pytest.skip('no installed cil_nb_run console script that torchrun can run')
    return w

def torchrun(*args, n: int = 2, timeout: int = 150):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n), *map(str, args)]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)

ARGS = ['--method', 'icarl', '--dataset', 'synthetic', '--epochs', '3', '--device', 'cpu', '--threads', '1', '--precision', 'fp32']

def test_cli_under_torchrun_matches_one_process(tmp_path):
    one, two = tmp_path / 'one', tmp_path / 'two'
    cil_nb_run(ARGS + ['--out', str(one)])
    p = torchrun(console_script(), *ARGS, '--out', two)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('icarl on synthetic') == 1          # process 0 alone prints
    r1, r2 = Result.load(one / 'icarl' / 'results.json'), Result.load(two / 'icarl' / 'results.json')
    d1, d2 = r1.to_dict(), r2.to_dict()
    assert set(d1) == set(d2) and r1.heads == r2.heads and r1.phase_sizes == r2.phase_sizes
    assert set(d1['metrics']['records']) == set(d2['metrics']['records'])
    for h in r1.heads: assert r1.metrics.R(h).shape == r2.metrics.R(h).shape
    assert len(r2.history) == len(r1.history) and len(r2.history[0]) == 3 and set(r2.history[0][0]) == set(r1.history[0][0])
    assert r2.runtime['processes'] == 2 and 'processes' not in r1.runtime
    for h in r1.heads:
        a1, a2 = r1.summary(h)['avg_inc_acc'], r2.summary(h)['avg_inc_acc']
        assert abs(a1 - a2) <= 2, (h, a1, a2)
    assert sorted(f.name for f in (two / 'icarl').iterdir()) == sorted(f.name for f in (one / 'icarl').iterdir())   # no stray files

def test_processes_agree_and_resume(tmp_path):
    # a one-process run stopped after 2 of 3 phases, continued by two processes
    from cil_nb.data import make_synthetic, Scenario
    from cil_nb.learner import get_method
    from cil_nb.cli import load_methods
    load_methods()
    sc = Scenario(make_synthetic(n_classes=6, n_train=40, n_test=20, size=16), base=2, increment=2, seed=1993)
    run(get_method('icarl', epochs=2), sc, device='cpu', seed=0, out=tmp_path / 'icarl', phases=2, log=lambda *a: None, progress=False)
    p = torchrun(HERE / '_dist_worker.py', 'icarl', tmp_path, 2, 'resume')
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = (json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1))
    assert a['world'] == 2 and a == b                  # same scores, model, memory and loss history in both processes
    assert len(a['acc']) == 3 and a['processes'] == 2
    res = Result.load(tmp_path / 'icarl' / 'results.json')
    assert len(res.phase_seconds) == 3 and res.summary('cnn')['avg_inc_acc'] == a['summary']['cnn']['avg_inc_acc']

def test_every_method_runs_under_torchrun(tmp_path):
    "All ten methods, each split over two processes: every one finishes, and both processes end with the same model, memory, scores and losses."
    from _dist_all import NAMES
    p = torchrun(HERE / '_dist_all.py', tmp_path, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    for name in NAMES:
        a, b = (json.loads((tmp_path / f'{name}.rank{r}.json').read_text()) for r in (0, 1))
        assert a == b, name
        assert a['processes'] == 2 and len(a['history']) == 3, name
        assert all(v['avg_inc_acc'] > 0 for v in a['summary'].values()), name
        assert (tmp_path / name / 'results.json').exists() and (tmp_path / name / 'checkpoint.pt').exists()

def test_a_method_that_cannot_be_split_refuses(tmp_path):
    "A method's own `torchrun_refusal` is its one-line reason, given before any method of the command runs."
    script = tmp_path / 'refuse.py'
    script.write_text(
        "import sys\nfrom cil_nb.learner import Method, register\nfrom cil_nb.cli import cil_nb_run\n"
        "@register\nclass Whole(Method):\n    name, torchrun_refusal = 'whole', 'its step needs every image of a batch in one process'\n"
        "cil_nb_run(sys.argv[1:])\n")
    p = torchrun(script, '--method', 'icarl,whole', '--dataset', 'synthetic', '--epochs', '1', '--device', 'cpu', '--out', tmp_path / 'runs')
    assert p.returncode != 0
    assert 'cil_nb_run: error: whole does not run under torchrun (its step needs every image of a batch in one process)' in p.stderr
    assert not list(tmp_path.glob('runs/*/results.json'))   # refused before any method ran, icarl included
