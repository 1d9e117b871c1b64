"README.md is generated from nbs/index.ipynb and gives exactly the two set-up commands."
import re, subprocess, sys
from pathlib import Path
root = Path(__file__).resolve().parent.parent

def test_readme_is_fresh():
    r = subprocess.run([sys.executable, str(root / '.ci' / 'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_two_setup_commands():
    blocks = re.findall(r'```sh\n(.*?)```', (root / 'README.md').read_text(), re.S)
    cmds = [l for b in blocks for l in b.splitlines() if l.startswith('pip install')]
    assert cmds == ['pip install -e . && cil_nb_run', 'pip install -e ".[dev]" && nbdev_test --n_workers 1 && pytest -q tests']
