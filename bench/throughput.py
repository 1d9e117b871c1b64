#!/usr/bin/env python
"""Training throughput of ResNet-32 at batch 128 on CIFAR-shaped synthetic data (3 x 32 x 32 uint8, 10 classes):
the shared loop of cil_nb (`Batches` + `Augment` on the device + a `Method`'s loss and optimiser step) against a plain
torch DataLoader over PIL images with torchvision transforms (RandomCrop(32, 4), RandomHorizontalFlip, ToTensor,
Normalize). On the CPU and, when present, on CUDA (bfloat16 autocast + channels_last there, as in the shared loop).

usage: python bench/throughput.py [--devices cpu,cuda] [--steps 20] [--warmup 3] [--n 5120] [--workers 2]
                                  [--precision auto|fp32|bf16] [--compile] [--threads N]
A benchmark, not a test: it prints images a second for each (device, pipeline); the goal on an H100 is >= 20,000 img/s
for the shared loop."""
import argparse, time, sys
from contextlib import nullcontext
import numpy as np
import torch
import torch.nn.functional as F
from cil_nb.data import CILData, Scenario, Batches, Augment
from cil_nb.learner import Method, Config, cpu_bf16_native, resolve_precision

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

def synthetic(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def shared_loop(x, y, dev, steps, warmup, precision='auto', compile=False, channels_last=True, aug=None):
    "cil_nb's loop: data on the device, batched augmentation, the Method's loss/step, losses summed on the device."
    d = CILData('synthetic-cifar', x, y, x[:256], y[:256], classes=[str(i) for i in range(10)], flip=True)
    sc = Scenario(d, base=10, increment=[], order=list(range(10)))
    m = Method(Config(backbone='resnet32', head='linear', batch_size=128, epochs=1, precision=precision, compile=compile,
                      channels_last=channels_last), per_class=None)
    m.setup(sc, dev, seed=0); p = sc[0]; m.before_phase(p)
    opt, sched = m.optimizer(p, steps + warmup)
    batches = Batches(m.train_x, m.train_y, None, 128, aug=aug or Augment(MEAN, STD, pad=4, flip=True), drop_last=True)
    m.model.train(); total = torch.zeros((), device=dev); it = iter(batches); n = 0
    for i in range(steps + warmup):
        if i == warmup: sync(dev); t0, c0 = time.perf_counter(), time.process_time()
        try: xb, yb = next(it)
        except StopIteration: it = iter(batches); xb, yb = next(it)
        if m.use_channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
        with m.autocast(): loss, parts = m.loss(xb, yb)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        total += loss.detach().float()
        if i >= warmup: n += len(yb)
    sync(dev); dt, dc = time.perf_counter() - t0, time.process_time() - c0
    assert torch.isfinite(total).item()
    return n / dt, n / dc

def dataloader_loop(x, y, dev, steps, warmup, workers, amp=True):
    "The usual recipe: PIL images, per-image torchvision transforms, a DataLoader, copies to the device each batch."
    from PIL import Image
    import torchvision.transforms as T
    from cil_nb.models import make_model
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    imgs = [Image.fromarray(a) for a in x.permute(0, 2, 3, 1).numpy()]
    class DS(torch.utils.data.Dataset):
        def __len__(self): return len(imgs)
        def __getitem__(self, i): return tf(imgs[i]), int(y[i])
    dl = torch.utils.data.DataLoader(DS(), batch_size=128, shuffle=True, drop_last=True, num_workers=workers,
                                     pin_memory=dev.type == 'cuda', persistent_workers=workers > 0)
    model = make_model('resnet32', 3, 'linear'); model.grow(10); model.to(dev)
    cuda = dev.type == 'cuda'
    if cuda: model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    ctx = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if cuda and amp else nullcontext
    model.train(); it = iter(dl); n = 0
    for i in range(steps + warmup):
        if i == warmup: sync(dev); t0, c0 = time.perf_counter(), time.process_time()
        try: xb, yb = next(it)
        except StopIteration: it = iter(dl); xb, yb = next(it)
        xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
        if cuda: xb = xb.contiguous(memory_format=torch.channels_last)
        with ctx(): loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if i >= warmup: n += len(yb)
    sync(dev)
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)   # (DataLoader workers' CPU is not counted)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--devices', default='cpu,cuda', help='devices to measure; cuda is skipped when absent')
    ap.add_argument('--steps', type=int, default=20, help='timed steps (batches of 128)')
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--n', type=int, default=5120, help='synthetic training images')
    ap.add_argument('--workers', type=int, default=2, help='DataLoader workers')
    ap.add_argument('--precision', default='auto', choices=['auto', 'fp32', 'bf16'],
                    help='of the shared loop; auto: bf16 on CUDA and on CPUs with native bfloat16, else fp32')
    ap.add_argument('--compile', action='store_true', help='torch.compile the backbone in the shared loop')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    x, y = synthetic(a.n)
    print(f'ResNet-32, batch 128, 3x32x32 uint8 synthetic, {a.steps} timed steps after {a.warmup} warm-up; torch {torch.__version__}, '
          f'{torch.get_num_threads()} CPU threads, native CPU bf16: {cpu_bf16_native()}')
    for name in a.devices.split(','):
        if name == 'cuda' and not torch.cuda.is_available():
            print('cuda: not available here, not measured'); continue
        dev = torch.device(name)
        label = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'
        mode = 'bf16 autocast + channels_last' if resolve_precision(a.precision, dev) == 'bf16' else 'float32'
        (r1, c1) = shared_loop(x, y, dev, a.steps, a.warmup, precision=a.precision, compile=a.compile)
        print(f'{label:>24}  shared loop (Batches + Augment on device, {mode}{", compiled" if a.compile else ""}): {r1:9,.0f} img/s ({c1:,.0f} per CPU-second of this process)', flush=True)
        (r2, c2) = dataloader_loop(x, y, dev, a.steps, a.warmup, a.workers)
        print(f'{label:>24}  DataLoader + PIL transforms ({a.workers} workers{", bf16 + channels_last" if dev.type == "cuda" else ", float32"}): {r2:9,.0f} img/s ({c2:,.0f} per CPU-second of the main process)', flush=True)
        print(f'{label:>24}  speed-up of the shared loop: {r1 / r2:.2f}x', flush=True)

if __name__ == '__main__': main()
