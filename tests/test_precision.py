"""bfloat16 (`precision='bf16'`) against float32: what stays float32 under autocast, and a small run in each.

Issue 20: under CPU autocast, softmax, log-softmax and normalisations are not promoted to float32 as on CUDA, so the
heads, losses and distillation terms used to run in bfloat16. Now only the backbone computes in bfloat16; these tests
pin that down, and compare a small iCaRL and LUCIR run in both precisions (same seed)."""
import time
import pytest, torch
import torch.nn.functional as F
from cil_nb.data import make_synthetic, Scenario
from cil_nb.models import make_model
from cil_nb.learner import run, get_method, cpu_bf16_native, resolve_precision, Config
from cil_nb.methods.baselines import kd_loss, margin_ranking_loss
from cil_nb.methods.class_impression import idc_loss

bf16 = lambda: torch.autocast('cpu', dtype=torch.bfloat16)

@pytest.mark.parametrize('head', ['linear', 'cosine'])
def test_heads_and_losses_are_float32_under_autocast(head):
    "Features, logits, cosines and the losses built on them are float32 under bf16 autocast, and equal the float32 head's."
    torch.manual_seed(0)
    model = make_model('resnet20', head=head).grow(3).grow(2).eval(); x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.no_grad(), bf16():
        z, f = model(x, with_features=True); cos = model.head(f, scale=False)
        kd, ce = kd_loss(z, z.flip(0)), F.cross_entropy(z, y)
        mr = margin_ranking_loss(cos, y, 3)
        idc = idc_loss(cos, y, cos.flip(0), torch.zeros(5, 5), torch.zeros(5, 5))[0]
    assert model.backbone.fmap(x).dtype == torch.float32            # outside autocast: all float32
    for t in (z, f, cos, kd, ce, mr, idc): assert t.dtype == torch.float32
    with torch.no_grad():   # the same features through the heads and losses without autocast: the same numbers
        torch.testing.assert_close(model.head(f), z, rtol=0, atol=0)
        torch.testing.assert_close(kd_loss(model.head(f), model.head(f).flip(0)), kd, rtol=1e-6, atol=1e-7)
        c2 = model.head(f, scale=False)
        torch.testing.assert_close(idc_loss(c2, y, c2.flip(0), torch.zeros(5, 5), torch.zeros(5, 5))[0], idc, rtol=1e-6, atol=1e-7)

def test_precision_setting():
    "fp32 is the default (bf16 loses accuracy on the issue's run); 'auto' means bf16 only where it is native."
    assert Config().precision == 'fp32' and Config.small().precision == 'fp32'
    assert resolve_precision('auto', 'cpu') == ('bf16' if cpu_bf16_native() else 'fp32')
    assert resolve_precision('auto', 'cuda') == 'bf16' and resolve_precision('fp32', 'cuda') == 'fp32'

@pytest.mark.skipif(not cpu_bf16_native(), reason='this CPU has no native bfloat16 (AMX or AVX512-BF16): bf16 autocast would be '
                    'emulated, minutes instead of seconds, and is never chosen by precision="auto" here')
def test_bf16_run_close_to_fp32():
    """A small run of iCaRL and LUCIR in bf16 and in fp32, same seed: the runs record their precision, and the bf16
    accuracies (A_avg, both heads) stay near the fp32 ones. On runs this small a seed moves single figures by several
    points either way (seeds 0-2 measured: mean difference over the 4 figures within 2.1 points, single figures up to
    11); the bound catches a broken bf16 path, not the 1-point gap the issue asks for (see 05_learner's table)."""
    syn = make_synthetic(n_classes=10, n_train=40, n_test=20, size=16)
    sc = Scenario(syn, base=2, increment=2)
    t0, diffs = time.time(), []
    for meth in ('icarl', 'lucir'):
        acc = {}
        for prec in ('fp32', 'bf16'):
            m = get_method(meth, None, precision=prec, epochs=6, batch_size=16, per_class=10)
            r = run(m, sc, device='cpu', seed=0, log=lambda s: None, progress=False)
            assert r.runtime['precision'] == prec and m.use_channels_last == (prec == 'bf16')
            acc[prec] = {h: r.summary(h)['avg_inc_acc'] for h in r.heads}
        diffs += [acc['bf16'][h] - acc['fp32'][h] for h in acc['fp32']]
    mean = sum(diffs) / len(diffs)
    assert abs(mean) <= 3 and max(abs(d) for d in diffs) <= 8, f'bf16 - fp32 A_avg (icarl cnn, nme, lucir cnn, nme): {diffs}'
    print(f'bf16 - fp32: {[round(d, 2) for d in diffs]} (mean {mean:.2f}), {time.time() - t0:.0f} s')
