"""Where bfloat16 autocast loses the gradient (issue 20): one batch of issue 20's run (128 digits at 32 px, ResNet-32 at
three initialisations, two classes), the parameter gradients under CPU bf16 autocast against float32.
usage: python bench/bf16_grad.py            (about 40 s on one thread; needs a CPU with bf16 autocast)
It prints the relative error of one bf16 convolution's gradients, of the whole network's gradient (plain, channels-last,
BatchNorm forced to float32), and the layers with the largest error."""
import contextlib
import torch, torch.nn as nn, torch.nn.functional as F
from cil_nb.data import load_dataset
from cil_nb.models import make_model

def rel(g, ref):
    "Relative error |g - ref| / |ref| over a dict of tensors."
    num = sum((g[n] - ref[n]).pow(2).sum() for n in ref); den = sum(ref[n].pow(2).sum() for n in ref)
    return (num / den).sqrt().item()

def main():
    torch.manual_seed(0); torch.set_num_threads(1)
    bf16 = lambda: torch.autocast('cpu', dtype=torch.bfloat16)
    for cin, hw in [(16, 32), (64, 8)]:      # one convolution: bf16 kernels are accurate to bf16's rounding
        conv = nn.Conv2d(cin, cin, 3, padding=1, bias=False)
        x = torch.randn(128, cin, hw, hw, requires_grad=True); dy = torch.randn(128, cin, hw, hw)
        def g(ctx):
            conv.zero_grad(); x.grad = None
            with ctx(): y = conv(x)
            (y.float() * dy).sum().backward(); return {'w': conv.weight.grad.clone(), 'x': x.grad.clone()}
        ref, b = g(contextlib.nullcontext), g(bf16)
        print(f'one conv ({cin} ch, {hw} px): weight grad error {rel({"w": b["w"]}, {"w": ref["w"]}):.4f}, '
              f'input grad error {rel({"x": b["x"]}, {"x": ref["x"]}):.4f}')
    d = load_dataset('digits', size=32)
    mean, std = d.mean_std()
    x = (d.train_x[:128].float() / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    y = d.train_y[:128] % 2
    for seed in (0, 1, 2):   # three initialisations: the error depends a lot on how small the true gradient is
        torch.manual_seed(seed)
        model = make_model('resnet32', head='linear', in_channels=x.shape[1]).grow(2).train()
        def grads(ctx, cl=False):
            m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            xx = x.contiguous(memory_format=torch.channels_last) if cl else x
            m.zero_grad()
            with ctx(): loss = F.cross_entropy(m(xx), y)
            loss.backward()
            return {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}, loss.item()
        ref, l32 = grads(contextlib.nullcontext)
        print(f'init seed {seed}: float32 repeated: error {rel(grads(contextlib.nullcontext)[0], ref):.4f}')
        g, l = grads(bf16); print(f'  bf16 autocast: gradient error {rel(g, ref):.4f} (loss {l:.5f} vs {l32:.5f})')
        print(f'  bf16 autocast, channels-last: gradient error {rel(grads(bf16, cl=True)[0], ref):.4f}')
        bn_forward = nn.BatchNorm2d.forward
        def bn32(self, inp):
            with torch.autocast('cpu', enabled=False): return bn_forward(self, inp.float())
        nn.BatchNorm2d.forward = bn32
        try: print(f'  bf16 autocast, BatchNorm in float32: gradient error {rel(grads(bf16)[0], ref):.4f}')
        finally: nn.BatchNorm2d.forward = bn_forward
        worst = sorted((((g[n] - ref[n]).norm() / ref[n].norm()).item(), n) for n in ref)[::-1][:4]
        print('  largest errors:', ', '.join(f'{n} {e:.2f}' for e, n in worst))

if __name__ == '__main__': main()
