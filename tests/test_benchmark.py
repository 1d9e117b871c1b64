"cil_nb.benchmark: the table and files of a tiny benchmark, the explorer's callbacks, and cil_nb_bench's argument errors."
import os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
import matplotlib.pyplot as plt
from cil_nb.core import CILError
from cil_nb.data import Scenario, make_synthetic
from cil_nb.learner import get_method, Result
from cil_nb.benchmark import (benchmark, bench_table, bench_rows, write_bench, Explorer, image_grid, phase_pictures,
                              cil_nb_bench, _parse_seeds)
import cil_nb.methods.baselines  # registers the baselines
from conftest import console

@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp('bench')
    sc = Scenario(make_synthetic(n_classes=6, n_train=16, n_test=6, size=16), base=2, increment=2)
    ms = [get_method(n, epochs=1, batch_size=16, per_class=3) for n in ('finetune', 'icarl')]
    res = benchmark(ms, sc, 'cpu', seeds=[0, 1], out=out, log=lambda s: None)
    return res, sc, out

def test_table_and_files(bench):
    res, sc, out = bench
    assert list(res) == ['finetune', 'icarl'] and all(len(v) == 2 for v in res.values())
    rows = bench_rows(res)
    assert rows[0]['A_avg NME'] == [None, None] and len(rows[1]['A_avg NME']) == 2
    assert all(v > 0 for r in rows for v in r['wall s'] + r['train img/s'] + r['peak MiB'])
    table = bench_table(res).splitlines()
    assert len(table) == 4 and table[2].startswith('| finetune | 2 |') and ' ± ' in table[3]
    md = write_bench(res, sc, out, 'cpu', command='pytest').read_text()
    assert sc.card() in md and '| icarl | 2 |' in md and 'Command: `pytest`' in md
    assert (out / 'curves.png').stat().st_size > 1000 and (out / 'bench.json').exists()
    assert not list(out.glob('.*.tmp'))                                  # written atomically, nothing left over
    assert Result.load(out / 'icarl' / 'seed1' / 'results.json').extras['peak_memory_mb'] > 0
    pics = sorted(p.name for p in (out / 'icarl' / 'seed0' / 'pictures').iterdir())
    assert pics == ['phase0_exemplars.png', 'phase1_exemplars.png', 'phase2_exemplars.png']
    assert not (out / 'icarl' / 'seed1' / 'pictures').exists()           # pictures of the first seed only
    h = [plt.imread(out / 'icarl' / 'seed0' / 'pictures' / f'phase{t}_exemplars.png').shape[0] for t in (0, 2)]
    assert h[1] >= 6 * 17 + 1 and h[1] > h[0]                            # a row a class (2, then 6), plus the title

def test_explorer_callbacks(bench):
    res, sc, out = bench
    ex = Explorer(res, show=False)
    assert list(ex.method.options) == ['finetune seed 0', 'finetune seed 1', 'icarl seed 0', 'icarl seed 1']
    assert ex.state == dict(label='finetune seed 0', head='cnn', phase=0, n_classes=2, pictures=[])
    n, fig = ex.updates, ex.figures['classes']
    ex.phase.value = 2                                                   # the slider redraws once
    assert ex.updates == n + 1 and ex.figures['classes'] is not fig
    assert ex.state['phase'] == 2 and len(ex.figures['classes'].axes[0].patches) == 6
    rect = [p for p in ex.figures['matrix'].axes[0].patches if isinstance(p, plt.Rectangle)][-1]
    assert rect.get_y() == 2 - 0.5                                       # the chosen phase's row is outlined
    ex.method.value = 'icarl seed 0'                                     # new result: nme appears, phase kept
    assert ex.head.options == ('cnn', 'nme') and ex.state == dict(label='icarl seed 0', head='cnn', phase=2, n_classes=6, pictures=['exemplars'])
    ex.head.value = 'nme'; ex.phase.value = 1
    assert ex.state['head'] == 'nme' and ex.state['n_classes'] == 4
    acc = res['icarl'][0].metrics.per_class('nme', 1)
    heights = [b.get_height() for b in ex.figures['classes'].axes[0].patches]
    np.testing.assert_allclose(heights, np.nan_to_num(acc))
    assert ex.pictures['exemplars'].name == 'phase1_exemplars.png'
    ex.method.value = 'finetune seed 1'                                  # back to one head: head resets to cnn
    assert ex.head.options == ('cnn',) and ex.state['head'] == 'cnn' and ex.state['pictures'] == []

def test_explorer_inputs(bench, tmp_path):
    res, sc, out = bench
    ex = Explorer([out / 'icarl' / 'seed0', str(out / 'finetune' / 'seed0' / 'results.json')], show=False)
    assert list(ex.method.options) == ['icarl seed 0', 'finetune seed 0'] and ex.state['pictures'] == ['exemplars']
    r = res['icarl'][0]
    assert sorted(phase_pictures(r, None, 2)) == ['exemplars']           # from Result.extras['pictures']
    with pytest.raises(CILError, match='no results at'): Explorer(tmp_path / 'nothing', show=False)
    with pytest.raises(CILError, match='cannot explore'): Explorer([42], show=False)

def test_image_grid():
    g = image_grid(torch.zeros(5, 1, 4, 4, dtype=torch.uint8), nrow=2)
    assert g.shape == (3 * 5 + 1, 2 * 5 + 1, 3) and g.dtype == np.uint8 and g[1, 1, 0] == 0 and g[0, 0, 0] == 255

def test_bad_arguments_in_process(capsys, tmp_path):
    for kw, msg in [(dict(seeds='a,b'), '--seeds must be'), (dict(seeds='1,1'), 'must not repeat'),
                    (dict(method='ewc'), 'unknown method'), (dict(base=3, increment='2'), 'cannot cover'),
                    (dict(memory=-1), '--memory must be')]:
        with pytest.raises(SystemExit) as e: cil_nb_bench(dataset='synthetic', out=str(tmp_path / 'never'), **kw)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith('cil_nb_bench: error:') and msg in err[0], err
    assert not (tmp_path / 'never').exists() and _parse_seeds('3,1') == [3, 1]

def test_console_script_errors(tmp_path):
    r = subprocess.run([*console('cil_nb_bench', 'cil_nb.benchmark'), '--seeds', 'x', '--out', str(tmp_path / 'o')],
                       capture_output=True, text=True, timeout=120, env={**os.environ, 'IN_TEST': '1'})
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["cil_nb_bench: error: --seeds must be a comma-separated list of integers, got 'x'"]

def test_every_method_is_registered():
    "cil_nb_bench can run all ten methods (the CLI imports every module of cil_nb.methods)."
    from cil_nb.cli import load_methods
    assert {'finetune', 'joint', 'icarl', 'lucir', 'foster', 'mnemonics', 'aanets', 'class_impression', 'genifer', 'cim'} <= set(load_methods())

def test_variants_in_process(capsys, tmp_path):
    "A variant is a row of its own under its name; bad keys or values are one line and exit 2."
    cil_nb_bench(method='finetune,finetune:lr=0.01', dataset='synthetic', seeds='0', epochs=1, out=str(tmp_path / 'v'), no_pictures=True)
    o = capsys.readouterr().out
    assert '| finetune | 1 |' in o and '| finetune:lr=0.01 | 1 |' in o and f'results in {(tmp_path / "v").absolute()}' in o
    assert Result.load(tmp_path / 'v' / 'finetune_lr=0.01' / 'seed0' / 'results.json').config['lr'] == 0.01
    for spec, msg in [('icarl:selection=best', 'selection=best is not allowed'), ('icarl:lr=fast', 'lr=fast is not a valid value'),
                      ('icarl:nope=1', "has no setting(s) ['nope']")]:
        with pytest.raises(SystemExit) as e: cil_nb_bench(method=spec, dataset='synthetic', out=str(tmp_path / 'never'))
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith('cil_nb_bench: error:') and msg in err[0], err
    assert not (tmp_path / 'never').exists()

def test_method_pictures(tmp_path):
    "Methods without plain exemplars show their own pictures: impressions, generated samples, compressed exemplars."
    import cil_nb.methods.class_impression, cil_nb.methods.genifer, cil_nb.methods.cim
    from cil_nb.benchmark import method_pictures, save_phase_pictures
    from cil_nb.learner import run
    torch.set_num_threads(1)
    sc = Scenario(make_synthetic(n_classes=6, n_train=12, n_test=4, n_val=4, size=16), base=2, increment=2)
    kw = dict(epochs=1, batch_size=8)   # 3 phases: Genifer trains a generator after every phase but the last
    cases = {'class_impression': (dict(syn_iters=3, syn_per_class=2), {'mean_images', 'impressions'}),
             'genifer': (dict(gan_steps=2), {'generated'}),
             'cim': (dict(per_class=2, compress_epochs=1), {'compressed_exemplars'})}
    for name, (extra, want) in cases.items():
        m = get_method(name, **kw, **extra)
        run(m, sc, 'cpu', seed=0, log=lambda s: None, progress=False)
        pics = method_pictures(m, sc[1])
        assert set(pics) == want, (name, set(pics))
        paths = save_phase_pictures(m, sc[1], tmp_path / name)
        assert all(Path(p).stat().st_size > 100 for p in paths.values())

def test_jobs_match_one_process(tmp_path):
    "--jobs 2 runs (method, seed) cells in two one-thread processes: the same accuracies as one process at one thread."
    kw = dict(method='finetune,icarl', dataset='synthetic', seeds='0,1', epochs=1, no_pictures=True)
    cil_nb_bench(out=str(tmp_path / 'a'), threads=1, **kw)
    cil_nb_bench(out=str(tmp_path / 'b'), jobs=2, **kw)
    for m in ('finetune', 'icarl'):
        for s in (0, 1):
            ra, rb = (Result.load(tmp_path / d / m / f'seed{s}' / 'results.json') for d in 'ab')
            for h in ra.heads: assert np.array_equal(ra.metrics.acc(h), rb.metrics.acc(h)), (m, s, h)
            assert rb.runtime['threads'] == 1 and rb.extras['wall_seconds'] > 0
    assert '2 runs at once' in (tmp_path / 'b' / 'results.md').read_text()
    with pytest.raises(SystemExit) as e: cil_nb_bench(out=str(tmp_path / 'c'), jobs=0, **kw)
    assert e.value.code == 2 and not (tmp_path / 'c' / 'finetune').exists()

def test_jobs_error_is_one_line(tmp_path):
    "A run that fails inside a --jobs worker (here: --resume against checkpoints of other settings) ends with one line and exit 2, no worker-manager traceback."
    out = tmp_path / 'o'
    args = [*console('cil_nb_bench', 'cil_nb.benchmark'), '--dataset', 'synthetic', '--method', 'finetune,icarl', '--seeds', '0,1',
            '--jobs', '2', '--no_pictures', '--out', str(out)]
    env = {**os.environ, 'IN_TEST': '1', 'OMP_NUM_THREADS': '1'}
    assert subprocess.run([*args, '--epochs', '1'], capture_output=True, text=True, timeout=300, env=env).returncode == 0
    r = subprocess.run([*args, '--epochs', '2', '--resume'], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('cil_nb_bench: error: checkpoint') and 'does not match this run' in err[0], r.stderr

def test_sigterm_stops_the_workers(tmp_path):
    "`kill` (SIGTERM) of a `--jobs 2` bench stops its worker processes too, with one line and a non-zero exit."
    import signal, time
    r = subprocess.Popen([*console('cil_nb_bench', 'cil_nb.benchmark'), '--method', 'finetune', '--dataset', 'synthetic',
                          '--seeds', '0,1', '--jobs', '2', '--threads', '1', '--epochs', '200', '--device', 'cpu',
                          '--no_pictures', '--out', str(tmp_path / 'o')],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    def children():
        out = subprocess.run(['ps', '-o', 'pid=', '--ppid', str(r.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]
    t0 = time.time()
    while len(children()) < 2 and time.time() - t0 < 120: time.sleep(0.5)   # the two workers have started
    kids = children(); assert len(kids) >= 2, kids
    time.sleep(3); r.send_signal(signal.SIGTERM)
    out, err = r.communicate(timeout=120)
    assert r.returncode != 0 and 'stopped by signal' in err, (r.returncode, err[-500:])
    time.sleep(1)
    alive = [p for p in kids if os.path.exists(f'/proc/{p}') and 'Z' not in open(f'/proc/{p}/stat').read().split()[2]]
    assert not alive, alive
