#!/usr/bin/env python
"""The prepared GPU check (issue 19): one table from three parts, in at most 8 minutes on one GPU.

  A. Throughput of the shared loop (ResNet-32, batch 128, CIFAR-shaped uint8 data): fp32; bf16 + channels-last;
     bf16 + channels-last + torch.compile; with FOSTER's augmentation (brightness, AutoAugment, Cutout); against a
     plain DataLoader over PIL images with torchvision transforms (bench/throughput.py does the timing).
  B. One `--preset paper` run of each method on synthetic CIFAR-shaped data (100 classes, 3 x 32 x 32), B50 + 10 x 5,
     with a few epochs a phase (and the GAN, synthesis and bilevel steps cut to match): the papers' networks,
     batch sizes, optimisers and augmentation, so that each method family's code runs at its real shapes.
  C. The Fashion-MNIST benchmark, one seed, every method (small preset), as `cil_nb_bench` runs it.

usage: python bench/gpu_check.py [--cpu] [--out runs/gpu_check] [--budget SECONDS]
  --cpu   a smoke version on the CPU (tiny sizes: part B on 10 classes of 16 x 16 images, B5 + 1 x 5; part C on 20 images a class;
          no torch.compile): checks that every path runs, in under 2 minutes.
The table is printed and written to <out>/gpu_check.md (and gpu_check.json).

What to look at (the speed goal: >= 20,000 training images a second for ResNet-32 at batch 128 on an H100/H200):
  * A, "bf16 + channels-last" against the goal. Below it, compare with "+ compile": a large gain means the loop is
    bound by kernel launches and Python (small convolutions at batch 128), and `compile=True` (or CUDA graphs) is the
    fix; no gain and GPU memory bandwidth bound means a larger batch is the only lever.
  * A, the DataLoader row against the shared loop: the shared loop should win clearly; if not, augmentation on the
    device is the bottleneck (look at the FOSTER-augmentation row: AutoAugment runs once per group of 16 images, a
    Python loop of 8 calls a batch).
  * A, "fp32" against "bf16": bf16 should be at least 1.5x faster on Hopper; if not, the model is not compute bound.
  * B, img/s of each method against A's row of the same precision (B runs at the presets' precision, fp32 unless a
    preset says otherwise; the row says which): a method far below A spends its time outside the shared loop (a GAN,
    synthesis, bilevel steps, FOSTER's two networks) or in host syncs (herding, evaluation); its seconds column says
    which. Genifer trains at batch 32 (the paper's), so its img/s is lower by design.
  * C, seconds per method: the budget for the 3-seed benchmark is 3x this.
No GPU was available while this script was written: none of these figures has been measured on one, and no speed fix
could be measured. The CPU smoke run only shows that every path runs.
"""
import argparse, json, os, sys, time, traceback
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).parent))
import throughput as tp                                     # bench/throughput.py
from cil_nb.core import get_device, seed_everything
from cil_nb.data import make_synthetic, Scenario, Augment, per_class_subset
from cil_nb.learner import run, resolve_precision
from cil_nb.cli import load_methods, prepare
from cil_nb.benchmark import benchmark, bench_rows

GOAL = 20_000
PAPER_METHODS = ['lucir', 'icarl', 'mnemonics', 'aanets', 'foster', 'cim', 'genifer', 'class_impression']
FAMILY = {'lucir': 'LUCIR family', 'icarl': 'LUCIR family', 'mnemonics': 'LUCIR family', 'aanets': 'LUCIR family',
          'foster': 'FOSTER family', 'cim': 'FOSTER family', 'genifer': 'data-free', 'class_impression': 'data-free'}
FASHION_METHODS = 'finetune,joint,icarl,lucir,mnemonics,aanets,foster,cim,genifer,class_impression'
FASHION = dict(dataset='fashion-mnist', base=2, increment='2', preset='small', train_per_class=500)   # README's benchmark: 5 phases of 2, 500 a class

def sizes(cpu: bool) -> dict:
    "Everything that differs between the GPU check and its CPU smoke version."
    if cpu: return dict(tp_n=256, tp_steps=1, tp_warmup=1, workers=0, compile=False, n_classes=10, base=5, increment=1, size=16,
                        n_train=4, n_test=2, epochs=1,
                        caps={'mnemonics': dict(outer_iters=1, inner_steps=1, outer_batch=16), 'foster': dict(compress_epochs=1),
                              'cim': dict(compress_epochs=1, meta_batch=4),
                              'genifer': dict(gan_steps=2, base_gan_steps=None, gan_batch=4, z_dim=32, g_width=16, d_width=16),
                              'class_impression': dict(syn_iters=2, syn_per_class=1)},
                        fashion_subset=(20, 10), fashion_methods='finetune,icarl', fashion_epochs=1)
    return dict(tp_n=12_800, tp_steps=50, tp_warmup=10, workers=4, compile=True, n_classes=100, base=50, increment=10, size=32,
                n_train=100, n_test=20, epochs=3,
                caps={'mnemonics': dict(outer_iters=20), 'foster': dict(compress_epochs=3), 'cim': dict(compress_epochs=3),
                      'genifer': dict(gan_steps=300, base_gan_steps=None), 'class_impression': dict(syn_iters=200, syn_per_class=10)},
                fashion_subset=None, fashion_methods=FASHION_METHODS, fashion_epochs=None)

class Table:
    def __init__(self): self.rows, self.t0 = [], time.perf_counter()
    def add(self, part, what, result, seconds):
        self.rows.append(dict(part=part, what=what, result=result, seconds=round(seconds, 1)))
        print(f'{part}  {what:<52} {result}  ({seconds:.1f} s)', flush=True)
    def elapsed(self): return time.perf_counter() - self.t0
    def markdown(self, head: str) -> str:
        out = [head, '', '| part | what | result | seconds |', '|---|---|---|---:|']
        out += [f'| {r["part"]} | {r["what"]} | {r["result"]} | {r["seconds"]} |' for r in self.rows]
        return '\n'.join(out)

def guarded(tab, part, what, fn):
    "Run one measurement; an error becomes a row instead of ending the check."
    t = time.perf_counter()
    try: return fn()
    except Exception as e:
        tab.add(part, what, f'error: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ""}', time.perf_counter() - t)
        traceback.print_exc(limit=3)

def part_a(tab, dev, S):
    x, y = tp.synthetic(S['tp_n'])
    bf16_ok = resolve_precision('auto', dev) == 'bf16'
    foster_aug = Augment(tp.MEAN, tp.STD, pad=4, flip=True, autoaugment='cifar10', cutout=16, brightness=63 / 255)
    cases = [('shared loop, fp32', dict(precision='fp32', channels_last=False)),
             ('shared loop, bf16 + channels-last', dict(precision='bf16', channels_last=True)),
             ('shared loop, bf16 + channels-last + compile', dict(precision='bf16', channels_last=True, compile=True)),
             ('shared loop, bf16 + channels-last, FOSTER augmentation', dict(precision='bf16', channels_last=True, aug=foster_aug))]
    for what, kw in cases:
        if kw.get('precision') == 'bf16' and not bf16_ok and dev.type == 'cpu':
            kw = {**kw, 'precision': 'fp32', 'channels_last': False}; what = what.replace('bf16 + channels-last', 'fp32 (no native bf16 here)')
        if kw.get('compile') and not S['compile']:
            tab.add('A', what, 'skipped on --cpu (compiling takes minutes on a CPU)', 0); continue
        t = time.perf_counter()
        r = guarded(tab, 'A', what, lambda: tp.shared_loop(x, y, dev, S['tp_steps'], S['tp_warmup'], **kw))
        if r is not None:
            goal = f' ({"meets" if r[0] >= GOAL else "below"} the {GOAL:,} goal)' if dev.type == 'cuda' else ''
            tab.add('A', what, f'{r[0]:,.0f} img/s{goal}', time.perf_counter() - t)
    t = time.perf_counter()
    r = guarded(tab, 'A', 'DataLoader + PIL transforms', lambda: tp.dataloader_loop(x, y, dev, S['tp_steps'], S['tp_warmup'], S['workers']))
    if r is not None:
        tab.add('A', f'DataLoader + PIL transforms ({S["workers"]} workers{", bf16 + channels-last" if dev.type == "cuda" else ", fp32"})',
                f'{r[0]:,.0f} img/s', time.perf_counter() - t)

def part_b(tab, dev, S, budget):
    M = load_methods()
    data = make_synthetic(n_classes=S['n_classes'], n_train=S['n_train'], n_test=S['n_test'], n_val=2, size=S['size'])
    sc = Scenario(data, base=S['base'], increment=S['increment'], seed=1993)
    for name in PAPER_METHODS:
        what = f'{name} ({FAMILY[name]}), paper preset, B{S["base"]} + {S["increment"]} x 5, {S["epochs"]} epochs, {S["size"]} px'
        if tab.elapsed() > budget:
            tab.add('B', what, 'skipped: over the time budget', 0); continue
        def one():
            cfg = M[name].Config.preset(small=False).replace(epochs=S['epochs'], base_epochs=None, **S['caps'].get(name, {}))
            m = M[name](cfg)
            if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
            t = time.perf_counter()
            r = run(m, sc, device=dev, seed=0, log=lambda *a: None, progress=False)
            ips = sum(r.images_per_second) / len(r.images_per_second)
            mem = f', peak {torch.cuda.max_memory_allocated(dev) / 2**20:,.0f} MiB' if dev.type == 'cuda' else ''
            tab.add('B', what, f'A_avg {r.summary("cnn")["avg_inc_acc"]:.1f} (chance-level data), training {ips:,.0f} img/s, '
                    f'{cfg.backbone}, batch {cfg.batch_size}, {m.precision}{mem}', time.perf_counter() - t)
        guarded(tab, 'B', what, one)

def part_c(tab, dev, S, out, budget):
    t = time.perf_counter()
    def setup():
        ms, sc, d, _ = prepare(S['fashion_methods'], FASHION['dataset'], base=FASHION['base'], increment=FASHION['increment'],
                               preset=FASHION['preset'], device=str(dev), out=str(out / 'fashion'), epochs=S['fashion_epochs'],
                               train_per_class=FASHION['train_per_class'])
        if S['fashion_subset']:
            sc = Scenario(per_class_subset(sc.data, *S['fashion_subset']), FASHION['base'], int(FASHION['increment']), seed=1993)
        return ms, sc
    got = guarded(tab, 'C', 'Fashion-MNIST data', setup)
    if got is None: return
    ms, sc = got
    for m in ms:
        what = f'Fashion-MNIST, {m.label}, seed 0, B2 + 2 x 4' + (' (smoke: 20 a class)' if S['fashion_subset'] else ', 500 a class')
        if tab.elapsed() > budget:
            tab.add('C', what, 'skipped: over the time budget', 0); continue
        def one():
            t = time.perf_counter()
            res = benchmark([m], sc, dev, seeds=[0], out=out / 'fashion', log=lambda *a: None, pictures=False, overwrite=True)
            row = bench_rows(res)[0]
            nme = row['A_avg NME'][0]
            tab.add('C', what, f'A_avg CNN {row["A_avg CNN"][0]:.2f}' + (f', NME {nme:.2f}' if nme is not None else ''), time.perf_counter() - t)
        guarded(tab, 'C', what, one)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cpu', action='store_true', help='smoke version on the CPU (tiny sizes, no compile)')
    ap.add_argument('--out', default='runs/gpu_check', help='where the table and the Fashion-MNIST runs go')
    ap.add_argument('--budget', type=float, default=None, help='seconds after which remaining runs are skipped '
                    '(default: 420 on a GPU, 105 with --cpu; part B stops 120 s (12 s) earlier, to leave time for part C)')
    a = ap.parse_args(argv)
    dev = torch.device('cpu') if a.cpu else get_device('auto')
    if not a.cpu and dev.type != 'cuda':
        print('gpu_check: error: no CUDA GPU here; run with --cpu for the smoke version', file=sys.stderr); sys.exit(2)
    S = sizes(a.cpu); budget = a.budget if a.budget is not None else (105 if a.cpu else 420)
    reserve_c = 12 if a.cpu else 120                         # seconds kept for part C
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'CPU, {torch.get_num_threads()} thread(s)'
    head = (f'gpu_check{" --cpu (smoke: tiny sizes, figures mean nothing)" if a.cpu else ""} on {name}, torch {torch.__version__}, '
            f'precision auto = {resolve_precision("auto", dev)}')
    print(head, flush=True)
    tab = Table(); seed_everything(0)
    try:
        part_a(tab, dev, S)
        part_b(tab, dev, S, budget - reserve_c)
        part_c(tab, dev, S, out, budget)
    except KeyboardInterrupt:   # gpu_check.sh's time limit (SIGINT): keep the rows measured so far
        tab.add('-', 'interrupted (time limit or Ctrl-C)', 'error: the rows above are all that ran', 0)
    md = tab.markdown(head + f'\n\ntotal {tab.elapsed():.0f} s')
    (out / 'gpu_check.md').write_text(md + '\n')
    (out / 'gpu_check.json').write_text(json.dumps({'head': head, 'rows': tab.rows}, indent=1))
    print('\n' + md)
    bad = [r for r in tab.rows if r['result'].startswith('error')]
    sys.exit(1 if bad else 0)

if __name__ == '__main__': main()
