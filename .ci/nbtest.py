#!/usr/bin/env python3
"""Test every notebook as `nbdev_test --n_workers 1` does, one after the other, printing each notebook's name when it
starts and its result and seconds when it ends, so that a long run shows where it is.
usage: python .ci/nbtest.py [--flags "slow cuda"] [notebook ...]     (default: every notebook under nbs/)"""
import argparse, sys, time
from pathlib import Path
from nbdev.config import get_config
from nbdev.test import test_nb
from fastcore.xtras import working_directory

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--flags', default='', help='space-separated test flags to run too (normally skipped), e.g. "slow cuda"')
    p.add_argument('notebooks', nargs='*', help='notebooks to test (default: all)')
    a = p.parse_args()
    cfg = get_config(); nbs = Path(cfg.nbs_path)
    if a.notebooks: files = [Path(f).absolute() for f in a.notebooks]
    else: files = sorted(f.absolute() for f in nbs.rglob('*.ipynb')
                         if not any(q.startswith(('_', '.')) for q in f.relative_to(nbs).parts))
    skip, force, failed, t_all = cfg.tst_flags.split(), a.flags.split(), [], time.time()
    with working_directory(nbs):
        for i, f in enumerate(files, 1):
            print(f'[{i}/{len(files)}] {f.name} ...', flush=True)
            ok, secs = test_nb(f, skip_flags=skip, force_flags=force, basepath=cfg.config_path)
            print(f'[{i}/{len(files)}] {f.name} {"ok" if ok else "FAILED"} in {secs:.0f} s', flush=True)
            if not ok: failed.append(f.name)
    print(f'{len(files) - len(failed)} of {len(files)} notebooks passed in {time.time() - t_all:.0f} s'
          + (f'; failed: {", ".join(failed)}' if failed else ''), flush=True)
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
