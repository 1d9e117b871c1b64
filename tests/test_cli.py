"cil_nb_run end to end, its habits (dashed flags, --version, --set, variants, where results went), and every bad argument: one line on stderr, exit code 2, nothing written."
import json, subprocess, sys, os, re
from pathlib import Path
import pytest
from conftest import console

EXE = console('cil_nb_run', 'cil_nb.cli')

def cli(*args, **kw):
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'IN_TEST': '1', 'OMP_NUM_THREADS': '1'}, **kw)

def test_end_to_end_on_digits(tmp_path):
    out = tmp_path / 'o'
    r = cli('--method', 'icarl,finetune', '--dataset', 'digits', '--base', '4', '--increment', '2', '--per_class', '10',
            '--epochs', '3', '--size', '16', '--device', 'cpu', '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert 'data set     digits' in r.stdout and 'phases       4: B4 + 2 x 3' in r.stdout
    assert r.stdout.count('phase 3  classes   10') == 2 and 'summary' in r.stdout
    assert f'results in {out.absolute()}: icarl/results.json, finetune/results.json' in r.stdout.strip().splitlines()[-1]
    for m in ('icarl', 'finetune'):
        assert sorted(p.name for p in (out / m).iterdir()) == ['accuracy_matrix.png', 'checkpoint.pt', 'curves.png', 'results.json']
    res = json.loads((out / 'icarl' / 'results.json').read_text())
    assert res['config']['per_class'] == 10 and res['config']['epochs'] == 3 and res['dataset'] == 'digits'
    assert len(res['metrics']['phase_sizes']) == 4 and set(res['summary']) == {'cnn', 'nme'}
    assert res['runtime']['threads'] == 1 and res['runtime']['torch'] and res['runtime']['device'] == 'cpu'
    assert 'machine      cpu, 1 thread, torch' in res['card']
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['icarl']['nme']['avg_inc_acc'] > summary['finetune']['cnn']['avg_inc_acc']
    # --resume on a finished run re-does nothing and reports the same numbers
    r2 = cli('--method', 'icarl', '--dataset', 'digits', '--base', '4', '--increment', '2', '--per_class', '10',
             '--epochs', '3', '--size', '16', '--device', 'cpu', '--out', str(out), '--resume')
    assert r2.returncode == 0, r2.stderr
    assert 'resumed from' in r2.stdout
    assert json.loads((out / 'icarl' / 'results.json').read_text())['summary'] == res['summary']

def test_digits_with_the_defaults(tmp_path):
    "README lists digits: it runs with the default backbone and no --size (upsampled, said on the card)."
    r = cli('--dataset', 'digits', '--method', 'finetune', '--epochs', '1', '--out', str(tmp_path / 'd'))
    assert r.returncode == 0, r.stderr
    assert 'phase 4  classes   10' in r.stdout and '16 x 16' in r.stdout

def test_habits(tmp_path):
    "Dashed and underscored flags, --version, --set, and a variant with its own name and folder."
    v = cli('--version')
    assert v.returncode == 0 and v.stdout.startswith('cil_nb_run 0.') and 'torch' in v.stdout
    out = tmp_path / 'h'
    r = cli('--method', 'icarl,icarl:selection=random', '--dataset', 'synthetic', '--per-class', '3', '--set', 'epochs=1',
            '--set=batch_size=32', '--order-seed', '3', '--out', str(out))
    assert r.returncode == 0, r.stderr
    for label, folder, sel in [('icarl', 'icarl', 'herding'), ('icarl:selection=random', 'icarl_selection=random', 'random')]:
        res = json.loads((out / folder / 'results.json').read_text())
        assert (res['config']['selection'], res['config']['epochs'], res['config']['batch_size'], res['config']['per_class']) == (sel, 1, 32, 3)
        assert f'== {label} (' in r.stdout
    assert set(json.loads((out / 'summary.json').read_text())) == {'icarl', 'icarl:selection=random'}

def test_eval_on_the_validation_split(tmp_path, capsys):
    "--eval val reports on the validation split (a tuning run); the card and results say so."
    from cil_nb.cli import cil_nb_run
    cil_nb_run(['--method', 'finetune', '--dataset', 'synthetic', '--epochs', '1', '--eval', 'val', '--out', str(tmp_path / 'v')])
    res = json.loads((tmp_path / 'v' / 'finetune' / 'results.json').read_text())
    assert res['dataset'] == 'synthetic[val]' and 'evaluated on the val split' in res['card'], res['card']

def test_natural_order_and_padding(tmp_path):
    "--order_seed none keeps the classes in their natural order 0..n-1 and --pad_to zero-pads the images (the Class Impression code's MedMNIST protocol)."
    from cil_nb.cli import cil_nb_run
    cil_nb_run(['--method', 'finetune', '--dataset', 'synthetic', '--epochs', '1', '--order-seed', 'none', '--pad_to', '20',
                '--out', str(tmp_path / 'n')])
    res = json.loads((tmp_path / 'n' / 'finetune' / 'results.json').read_text())
    assert res['order'] == list(range(10)), res['order']
    assert 'class order  given/natural: 0, 1, 2' in res['card'] and 'images       3 x 20 x 20' in res['card'] and 'zero-padded to 20 px' in res['card'], res['card']

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
    (['--method', 'icarl:selection=best'], "'icarl:selection=best' for icarl: selection=best is not allowed: use one of herding, random, closest"),
    (['--method', 'icarl:epochs=many'], 'epochs=many is not a valid value'),
    (['--method', 'icarl:colour=red'], "has no setting(s) ['colour']"),
    (['--method', 'icarl:selection'], 'must look like method:key=value'),
    (['--set', 'aggregation=paper', '--method', 'icarl'], '--set for icarl:'),
    (['--eval', 'train'], "--eval must be 'test' or 'val'"),
    (['--threads', '0'], '--threads must be > 0'),
    (['--resume', '--overwrite'], 'not both'),
    (['--epochs', 'x'], "argument --epochs: invalid int value: 'x'"),
    (['--order_seed', 'random'], "argument --order_seed: must be an integer seed or none (the natural order 0..n-1), got 'random'"),
    (['--pad_to', '4'], "--pad_to must be at least the images' side (16 x 16), got 4"),
    (['--no-such-flag'], 'unrecognized arguments: --no_such_flag'),
])
def test_bad_arguments(tmp_path, args, msg, capsys):
    "In process (fast): cil_nb_run exits 2 with one line on stderr, prints nothing and writes nothing."
    from cil_nb.cli import cil_nb_run
    out = tmp_path / 'never'
    with pytest.raises(SystemExit) as e:
        cil_nb_run(['--dataset', 'digits', '--out', str(out), *args] if '--out' not in args else ['--dataset', 'digits', *args])
    o, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith('cil_nb_run: error:') and msg in lines[0], err
    assert not out.exists() and o == ''

def test_bad_arguments_from_the_console_script(tmp_path):
    "The installed script: the same one line and exit 2."
    for args, msg in [(['--method', 'ewc'], 'unknown method'), (['--epochs', 'x'], "invalid int value: 'x'")]:
        r = cli('--out', str(tmp_path / 'never'), *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr and r.stdout == '', r.stderr
    assert not (tmp_path / 'never').exists()

def test_help_shows_defaults_and_methods():
    "--help gives the defaults (--method, --out, --seed) and every method with a line, replay included."
    h = cli('--help')
    assert h.returncode == 0, h.stderr
    flat = ' '.join(h.stdout.split())
    assert '(default: icarl,finetune)' in flat and '--out OUT output folder (default: runs/cil_nb)' in flat
    assert '(weights, batches) (default: 0)' in flat
    methods = h.stdout.split('methods (--method):')[1]
    for m in ('icarl', 'finetune', 'lucir', 'joint', 'replay', 'genifer'): assert f'\n  {m} ' in methods, m
    assert 'plain replay' in methods
    b = subprocess.run([*console('cil_nb_bench', 'cil_nb.benchmark'), '--help'], capture_output=True, text=True, timeout=300)
    assert '(default: 0,1,2)' in ' '.join(b.stdout.split()) and '(default: finetune,icarl,lucir)' in ' '.join(b.stdout.split())

def test_method_names_in_any_case_and_did_you_mean(tmp_path):
    r = cli('--method', 'iCaRL', '--dataset', 'synthetic', '--epochs', '1', '--per_class', '2', '--out', str(tmp_path / 'c'))
    assert r.returncode == 0, r.stderr
    assert '== icarl (' in r.stdout and (tmp_path / 'c' / 'icarl' / 'results.json').exists()
    r = cli('--method', 'icral', '--out', str(tmp_path / 'n'))
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and "unknown method 'icral': did you mean icarl?" in r.stderr
    assert not (tmp_path / 'n').exists()

TINY = ('--dataset', 'digits', '--size', '16', '--epochs', '1', '--memory', '40', '--threads', '1')

def test_piped_output_is_plain_lines(tmp_path):
    "Sent to a pipe (not under tests, where bars are off anyway): no \\r or escape codes, one line a phase."
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'}
    r = subprocess.run([*EXE, '--method', 'icarl', *TINY, '--out', str(tmp_path / 'p')], capture_output=True, text=True,
                       timeout=600, env={**env, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr
    for s in (r.stdout, r.stderr): assert '\r' not in s and '\x1b' not in s, s[:500]
    assert [l[:8] for l in r.stdout.splitlines() if re.match(r'phase \d', l)] == [f'phase {t} ' for t in range(5)]

def test_bars_on_a_terminal(tmp_path):
    "With stderr on a terminal the phase and epoch bars are drawn there (tqdm's \\r updates), and stdout keeps plain lines."
    import pty, threading, fcntl, termios, struct
    master, slave = pty.openpty(); got = []
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))   # a terminal 100 columns wide
    def read():
        while True:
            try: b = os.read(master, 4096)
            except OSError: return
            if not b: return
            got.append(b)
    t = threading.Thread(target=read, daemon=True); t.start()
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'}
    r = subprocess.run([*EXE, '--method', 'finetune', *TINY, '--out', str(tmp_path / 't')], stdout=subprocess.PIPE, stderr=slave,
                       text=True, timeout=600, env={**env, 'OMP_NUM_THREADS': '1'})
    os.close(slave); t.join(5); os.close(master)
    tty = b''.join(got).decode(errors='replace')
    assert r.returncode == 0, tty[-500:]
    assert '\r' in tty and 'phase 4' in tty and 'epoch' in tty, tty[-500:]
    assert '\r' not in r.stdout and r.stdout.count('classes   10') == 1

def test_the_folder_summary_covers_every_run_of_the_scenario(tmp_path):
    "A second cil_nb_run into the same --out: the top level describes both runs, and says so; another scenario is left out."
    out = tmp_path / 'o'
    assert cli('--method', 'icarl,finetune', *TINY, '--out', str(out)).returncode == 0
    r = cli('--method', 'lucir', *TINY, '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert set(json.loads((out / 'summary.json').read_text())) == {'icarl', 'finetune', 'lucir'}
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith(f'results in {out.absolute()}: lucir/results.json') and 'cover the 3 runs of this scenario in it: finetune, icarl, lucir' in last
    r = cli('--method', 'joint', *TINY[:-2], '--base', '4', '--out', str(out))   # another scenario (B4): not mixed in
    assert r.returncode == 0, r.stderr
    assert set(json.loads((out / 'summary.json').read_text())) == {'joint'}
    last = r.stdout.strip().splitlines()[-1]
    assert 'cover the run of this scenario in it: joint' in last and 'left out of them: finetune/ (another scenario)' in last

def test_top_curves_show_every_head_and_plurals(tmp_path):
    "The top-level curves.png has iCaRL's NME head beside the CNN heads; '1 epoch a phase', not '1 epochs'."
    from cil_nb.cli import prepare, run_experiments
    import matplotlib.pyplot as plt
    ms, sc, dev, o = prepare('icarl,finetune', 'synthetic', per_class=2, epochs=1, device='cpu', out=tmp_path / 'h')
    lines = []; shown = []
    orig = plt.Figure.savefig
    def spy(self, *a, **k):
        shown.append([l.get_label() for ax in self.axes for l in ax.get_lines()]); return orig(self, *a, **k)
    plt.Figure.savefig = spy
    try: run_experiments(ms, sc, dev, o, log=lines.append)
    finally: plt.Figure.savefig = orig
    top = shown[-1]
    assert [l.split(' (')[0] for l in top] == ['icarl cnn', 'icarl nme', 'finetune cnn']
    assert any('1 epoch a phase' in l for l in lines) and not any('1 epochs' in l for l in lines)
