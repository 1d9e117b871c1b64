"cil_nb_run end to end on digits, and every bad argument: one line on stderr, exit code 2, nothing written."
import json, shutil, subprocess, sys, os
from pathlib import Path
import pytest

EXE = shutil.which('cil_nb_run')
pytestmark = pytest.mark.skipif(EXE is None, reason='cil_nb_run is not installed: pip install -e .')

def cli(*args, **kw):
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600, env={**os.environ, 'IN_TEST': '1'}, **kw)

def test_end_to_end_on_digits(tmp_path):
    out = tmp_path / 'o'
    r = cli('--method', 'icarl,finetune', '--dataset', 'digits', '--base', '4', '--increment', '2', '--per_class', '10',
            '--epochs', '3', '--size', '16', '--device', 'cpu', '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert 'data set     digits' in r.stdout and 'phases       4: B4 + 2 x 3' in r.stdout
    assert r.stdout.count('phase 3  classes   10') == 2 and 'summary' in r.stdout
    for m in ('icarl', 'finetune'):
        assert sorted(p.name for p in (out / m).iterdir()) == ['accuracy_matrix.png', 'checkpoint.pt', 'curves.png', 'results.json']
    res = json.loads((out / 'icarl' / 'results.json').read_text())
    assert res['config']['per_class'] == 10 and res['config']['epochs'] == 3 and res['dataset'] == 'digits'
    assert len(res['metrics']['phase_sizes']) == 4 and set(res['summary']) == {'cnn', 'nme'}
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['icarl']['nme']['avg_inc_acc'] > summary['finetune']['cnn']['avg_inc_acc']
    # --resume on a finished run re-does nothing and reports the same numbers
    r2 = cli('--method', 'icarl', '--dataset', 'digits', '--base', '4', '--increment', '2', '--per_class', '10',
             '--epochs', '3', '--size', '16', '--device', 'cpu', '--out', str(out), '--resume')
    assert r2.returncode == 0, r2.stderr
    assert 'resumed from' in r2.stdout
    assert json.loads((out / 'icarl' / 'results.json').read_text())['summary'] == res['summary']

@pytest.mark.parametrize('args,msg', [
    (['--method', 'ewc'], 'unknown method'),
    (['--dataset', 'imagenet'], 'unknown data set'),
    (['--dataset', 'medmnist:pathmnist', '--root', '/nonexistent'], 'not found: pass download=True'),
    (['--base', '3', '--increment', '2'], 'cannot cover'),
    (['--increment', '0'], 'increment must be > 0'),
    (['--memory', '-5'], '--memory must be'),
    (['--per_class', '-1'], '--per_class must be'),
    (['--memory', '100', '--per_class', '5'], 'not both'),
    (['--device', 'cuda:7'] if not __import__('torch').cuda.is_available() else ['--device', 'tpu'], 'device'),
    (['--out', '/proc/cil_nb_out'], 'cannot be written'),
    (['--backbone', 'vit'], 'unknown backbone'),
])
def test_bad_arguments(tmp_path, args, msg):
    out = tmp_path / 'never'
    r = cli('--dataset', 'digits', '--out', str(out), *args) if '--out' not in args else cli('--dataset', 'digits', *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('cil_nb_run: error:') and msg in lines[0], r.stderr
    assert not out.exists() and r.stdout == ''
