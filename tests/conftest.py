"Tests use the same small presets as `nbdev_test` (IN_TEST set) and stay on the CPU; the console scripts come from this interpreter."
import os, sys
from pathlib import Path
os.environ.setdefault('IN_TEST', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
import torch
# one thread a worker under pytest-xdist (`-n 2`: two tests at once on the two cores), else up to two
_xdist = 'PYTEST_XDIST_WORKER' in os.environ
if _xdist: os.environ['OMP_NUM_THREADS'] = '1'   # and in the console scripts the tests start
torch.set_num_threads(1 if _xdist else int(os.environ.get('OMP_NUM_THREADS', 0)) or max(1, min(2, os.cpu_count() or 1)))

def console(name: str, module: str) -> list:
    "The command that runs console script `name` of the interpreter running pytest: its script beside `sys.executable`, else `python -m module`."
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, '-W', 'ignore::RuntimeWarning', '-m', module]
