"Tests use the same small presets as `nbdev_test` (IN_TEST set) and stay on the CPU."
import os
os.environ.setdefault('IN_TEST', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
import torch
torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', 0)) or max(1, min(2, os.cpu_count() or 1)))
