#!/usr/bin/env python3
"""Test every notebook as `nbdev_test` does, printing each notebook's result and seconds when it ends (and, one at a
time, its name when it starts), so that a long run shows where it is. On a machine with two or more cores two notebooks run at once,
each in its own process with one torch thread (small models gain little from a second thread, so two one-thread
notebooks finish sooner than two two-thread ones in turn); the longest notebooks start first.
usage: python .ci/nbtest.py [--flags "slow cuda"] [--jobs N] [notebook ...]     (default: every notebook under nbs/)"""
import argparse, os, sys, time
from pathlib import Path
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed

# the method notebooks train for a minute or two each under IN_TEST; the rest take seconds (see .ci/run's log)
LONG = ('06_', '10_', '11_', '12_', '13_', '14_')

def _test(f: str, skip, force, basepath, nbs):
    from nbdev.test import test_nb
    from fastcore.xtras import working_directory
    with working_directory(nbs):
        return test_nb(Path(f), skip_flags=skip, force_flags=force, basepath=basepath)

def _child(f: Path, flags: str):
    "Test notebook `f` in a process of its own with one torch thread: (ok, seconds, its output)."
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    t0 = time.time()
    r = subprocess.run([sys.executable, __file__, '--jobs', '1', '--flags', flags, str(f)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode == 0, time.time() - t0, r.stdout

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--flags', default='', help='space-separated test flags to run too (normally skipped), e.g. "slow cuda"')
    p.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                   help='notebooks at once, one torch thread each when more than one (default: 2 where there are 2 cores)')
    p.add_argument('notebooks', nargs='*', help='notebooks to test (default: all)')
    a = p.parse_args()
    if a.jobs < 1: sys.exit(f'--jobs must be at least 1, got {a.jobs}')
    from nbdev.config import get_config
    cfg = get_config(); nbs = Path(cfg.nbs_path)
    if a.notebooks: files = [Path(f).absolute() for f in a.notebooks]
    else: files = sorted(f.absolute() for f in nbs.rglob('*.ipynb')
                         if not any(q.startswith(('_', '.')) for q in f.relative_to(nbs).parts))
    n = len(files)
    files = sorted(files, key=lambda f: not f.name.startswith(LONG))   # stable: the long ones first, in order
    skip, force, failed, t_all = cfg.tst_flags.split(), a.flags.split(), [], time.time()
    def done(i, f, ok, secs):
        print(f'[{i}/{n}] {f.name} {"ok" if ok else "FAILED"} in {secs:.0f} s', flush=True)
        if not ok: failed.append(f.name)
    if a.jobs == 1:
        for i, f in enumerate(files, 1):
            print(f'[{i}/{n}] {f.name} ...', flush=True)
            done(i, f, *_test(str(f), skip, force, cfg.config_path, nbs))
    else:
        print(f'{n} notebooks, {a.jobs} at once (one torch thread each), the longest first', flush=True)
        with ThreadPoolExecutor(a.jobs) as ex:
            futs = {ex.submit(_child, f, a.flags): f for f in files}
            for i, fut in enumerate(as_completed(futs), 1):
                ok, secs, out = fut.result()
                if not ok: print(out, flush=True)
                done(i, futs[fut], ok, secs)
    print(f'{n - len(failed)} of {n} notebooks passed in {time.time() - t_all:.0f} s'
          + (f'; failed: {", ".join(failed)}' if failed else ''), flush=True)
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
