"Mnemonics: the outer loss falls, the hypergradient reaches the pixels, and the memory keeps its counts and budget."
import math
import pytest, torch
from cil_nb.core import CILError
from cil_nb.data import Augment, Scenario, make_synthetic
from cil_nb.models import make_model
from cil_nb.learner import run, get_method
from cil_nb.methods.mnemonics import (MnemonicsConfig, hypergradient, optimise_pixels, bilevel_objective,
                                      released_objective, split_halves)

@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    d = make_synthetic(n_classes=4, n_train=8, n_test=2, size=16)
    aug = Augment(*d.mean_std(), pad=0, flip=False, crop=False)
    net = make_model('ci_net', d.channels, 'cosine', input_size=16).grow(4).eval()
    perm = torch.randperm(len(d.train_x))
    ex_i, q_i = perm[:8], perm[8:32]
    return dict(net=net, prep=aug.normalize, ex=d.train_x[ex_i].float() / 255, ey=d.train_y[ex_i].long(),
                qx=d.train_x[q_i], qy=d.train_y[q_i].long(), data=d)

def test_outer_loss_falls(tiny):
    vg = bilevel_objective(tiny['net'], tiny['prep'], tiny['ey'], tiny['qx'], tiny['qy'], steps=2, lr=0.1, batch=1000)
    ex, hist = optimise_pixels(tiny['ex'], vg, iters=4, lr=0.02)
    final = float(vg(ex, 0)[0])
    assert final < hist[0] and hist[-1] < hist[0], (hist, final)
    assert ex.min() >= 0 and ex.max() <= 1 and not torch.equal(ex, tiny['ex'])

@pytest.mark.parametrize('first_order', [False, True])
def test_gradients_reach_pixels(tiny, first_order):
    L, g = hypergradient(tiny['net'], tiny['prep'], tiny['ex'], tiny['ey'], tiny['qx'], tiny['qy'], steps=2, lr=0.1, first_order=first_order)
    assert g.shape == tiny['ex'].shape and torch.isfinite(g).all() and g.abs().sum() > 0 and math.isfinite(float(L))
    assert (g.flatten(1).abs().sum(1) > 0).all()        # every exemplar gets a gradient
    assert all(p.grad is None for p in tiny['net'].parameters())   # the model itself is untouched
    assert not tiny['net'].training

def test_released_objective_gradient(tiny):
    means = torch.nn.functional.normalize(torch.randn(4, tiny['net'].out_dim), dim=1)
    L, g = released_objective(tiny['net'], tiny['prep'], tiny['ey'], tiny['qx'], tiny['qy'], means, batch=1000)(tiny['ex'], 0)
    assert torch.isfinite(g).all() and g.abs().sum() > 0

def test_split_halves_keeps_shape_and_singletons(tiny):
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    build = lambda ty, hx, hy: bilevel_objective(tiny['net'], tiny['prep'], ty, hx, hy, 1, 0.1, 100)
    x, hs = split_halves(tiny['ex'][:6], y, build, iters=1, lr=0.02)
    assert x.shape == tiny['ex'][:6].shape and torch.equal(x[5], tiny['ex'][5]) and [len(h) for h in hs] == [1, 1]

@pytest.mark.parametrize('host,budget', [('lucir', dict(per_class=3)), ('icarl', dict(memory=12, per_class=None))])
def test_counts_and_budget_in_a_run(tiny, host, budget):
    sc = Scenario(make_synthetic(n_classes=4, n_train=10, n_test=4, size=16), base=2, increment=2)
    m = get_method('mnemonics', host=host, epochs=1, batch_size=16, outer_iters=1, outer_batch=8, inner_steps=1, **budget)
    res = run(m, sc, device='cpu', seed=0, log=lambda s: None)
    counts = m.memory.counts()
    assert sorted(counts) == list(range(4))
    if 'memory' in budget: assert set(counts.values()) == {12 // 4} and len(m.memory) <= 12
    else: assert set(counts.values()) == {3}
    x, y = m.memory.tensors()
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and len(x) == len(y)
    recs = res.extras['mnemonics']
    assert [r['phase'] for r in recs] == [0, 1] and recs[0]['n_old'] == 0 and recs[1]['n_old'] == 2 * counts[0]
    assert all(math.isfinite(r['new_loss_final']) and r['seconds_per_outer_iter'] > 0 for r in recs)
    assert type(m.model.head).__name__ == ('CosineHead' if host == 'lucir' else 'LinearHead')

def test_bad_settings():
    with pytest.raises(CILError, match="unknown host 'foo'"): MnemonicsConfig(host='foo')
    with pytest.raises(CILError, match='released'): get_method('mnemonics', objective='x')
    with pytest.raises(CILError, match='inner_steps'): get_method('mnemonics', inner_steps=0)
    from cil_nb.cli import prepare
    with pytest.raises(CILError, match="unknown host 'der'"): prepare(method='mnemonics', dataset='synthetic', host='der')
    ms, *_ = prepare(method='mnemonics', dataset='synthetic', host='icarl', out='/tmp/cil_nb_test_mn')
    assert ms[0].cfg.host == 'icarl'
