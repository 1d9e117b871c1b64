"README.md is generated from nbs/index.ipynb, gives the set-up commands, and its Python quick start runs as printed."
import os, re, subprocess, sys, tempfile, time
from pathlib import Path
root = Path(__file__).resolve().parent.parent

def test_readme_is_fresh():
    r = subprocess.run([sys.executable, str(root / '.ci' / 'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_setup_commands():
    blocks = re.findall(r'```sh\n(.*?)```', (root / 'README.md').read_text(), re.S)
    cmds = [l for b in blocks for l in b.splitlines() if l.startswith('pip install')]
    assert cmds[0] == 'pip install torch==2.14.1 torchvision==0.29.1'   # the build that made the figures (CI's)
    assert cmds[1] == 'pip install -e . && cil_nb_run'
    assert cmds[2].startswith('pip install -e ".[dev]" && ')   # the test command (.ci/run runs it verbatim)
    assert len(cmds) == 3
    text = ' '.join((root / 'README.md').read_text().split())
    # which build made the figures, and what is known of the CPU-only one
    assert 'the CUDA build, running on the CPU' in text and '`torch 2.14.1+cu130`' in text
    assert '--index-url https://download.pytorch.org/whl/cpu' in text and 'we have not measured it' in text

def quick_start() -> str:
    "The python block of README's 'Python quick start' section."
    sec = (root / 'README.md').read_text().split('## Python quick start', 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'```python\n(.*?)```', sec, re.S)
    assert len(blocks) == 1, 'the quick start should be one python block'
    return blocks[0]

def test_quick_start_runs():
    "Run the block as a user would: a fresh interpreter in an empty folder, no IN_TEST (so the default preset), one thread."
    code = quick_start()
    assert code.startswith('from cil_nb import *') and len(code.strip().splitlines()) <= 14
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'}
    env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', MPLBACKEND='Agg', PYTHONPATH=str(root))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        r = subprocess.run([sys.executable, '-c', code], cwd=d, env=env, capture_output=True, text=True, timeout=600)
        secs = time.time() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert re.search(r'^phase 4\s+classes\s+10\s', out, re.M), out        # five phases ran, ten classes at the end
    assert 'icarl on mnist5k: cnn: A_avg' in out and '| nme: A_avg' in out, out
    assert len(re.findall(r'^\s*\[+[\d. nan]+\]', out, re.M)) == 5, out   # the 5 x 5 accuracy matrix
    last_nme = float(re.search(r'nme: A_avg [\d.]+, last ([\d.]+)', out).group(1))
    assert last_nme > 40, out   # well above chance (10%) after two epochs a phase at the small preset
    assert secs < 300, f'the quick start took {secs:.0f} s: is the default preset the small one?'
