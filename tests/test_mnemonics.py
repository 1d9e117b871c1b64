"Mnemonics: the outer loss falls, the hypergradient reaches the pixels (in pieces too), v1 adapts only the classifier, and the memory keeps its counts and budget."
import math
import pytest, torch
import torch.nn.functional as F
from cil_nb.core import CILError
from cil_nb.data import Augment, Scenario, make_synthetic
from cil_nb.models import make_model
from cil_nb.learner import run, get_method
from cil_nb.methods.mnemonics import (MnemonicsConfig, hypergradient, optimise_pixels, bilevel_objective,
                                      released_objective, split_halves, v1_objective, tsne_watch, plot_mnemonics_tsne)

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

@pytest.mark.parametrize('first_order', [False, True])
def test_chunked_hypergradient_is_the_same(tiny, first_order):
    "The reverse sweep in pieces gives the single graph's loss and gradient (no finite differences: the same numbers)."
    args = (tiny['net'], tiny['prep'], tiny['ex'], tiny['ey'], tiny['qx'], tiny['qy'])
    L, g = hypergradient(*args, steps=3, lr=0.1, first_order=first_order)
    for chunk in (1, 3, 5):      # 8 exemplars and 24 query images in pieces
        Lc, gc = hypergradient(*args, steps=3, lr=0.1, first_order=first_order, chunk=chunk)
        assert abs(float(Lc - L)) < 1e-6 and float((gc - g).norm() / g.norm()) < 1e-5, (chunk, float((gc - g).norm() / g.norm()))
    assert all(p.grad is None for p in tiny['net'].parameters())

def test_v1_adapts_only_the_classifier(tiny):
    "v1's loss and hypergradient are those of a loop that trains the classifier rows alone, one exemplar a class a step."
    net, prep, ex, ey, qx, qy = (tiny[k] for k in ('net', 'prep', 'ex', 'ey', 'qx', 'qy'))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    L, g = v1_objective(net, prep, ey, qx, qy, lr=0.05, batch=1000, passes=2)(ex, 0)
    # reference, written out: backbone frozen, W = all the cosine rows, step s on the s-th exemplar of every class
    exg = ex.clone().requires_grad_()
    with torch.no_grad(): fq = F.normalize(net.features(prep(qx)), dim=1)
    fe = F.normalize(net.features(prep(exg)), dim=1)
    W = torch.cat(list(net.head.weights)).detach().requires_grad_()
    by_class = [(ey == c).nonzero().squeeze(1) for c in ey.unique()]
    n_steps = 0
    for _ in range(2):
        for s in range(max(len(i) for i in by_class)):
            sel = torch.stack([i[s] for i in by_class if len(i) > s])
            W = W - 0.05 * torch.autograd.grad(F.cross_entropy(fe[sel] @ F.normalize(W, dim=1).T, ey[sel]), W, create_graph=True)[0]
            n_steps += 1
    ref = F.cross_entropy(fq @ F.normalize(W, dim=1).T, qy)
    g_ref, = torch.autograd.grad(ref, exg)
    assert n_steps == 2 * max(len(i) for i in by_class) and g.abs().sum() > 0
    assert abs(float(L - ref.detach())) < 1e-6 and torch.allclose(g, g_ref, rtol=1e-4, atol=1e-6 * float(g_ref.abs().max()))
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in net.named_parameters())   # the model is not adapted
    _, g0 = v1_objective(net, prep, ey, qx, qy, lr=0.05, batch=1000, passes=2, create_graph=False)(ex, 0)
    assert float(g0.abs().sum()) == 0     # the code's call (no create_graph): the pixels get no gradient

def test_v1_uses_adam_0_5(monkeypatch):
    "objective='v1' moves the pixels with Adam, betas (0.5, 0.999); the paper's objective with (0.9, 0.999)."
    made = []
    class Recording(torch.optim.Adam):
        def __init__(self, params, **kw): made.append(tuple(kw.get('betas', (0.9, 0.999)))); super().__init__(params, **kw)
    monkeypatch.setattr(torch.optim, 'Adam', Recording)
    sc = Scenario(make_synthetic(n_classes=4, n_train=10, n_test=4, size=16), base=2, increment=2)
    for objective, betas in (('v1', (0.5, 0.999)), ('bilevel', (0.9, 0.999))):
        made.clear()
        m = get_method('mnemonics', objective=objective, epochs=1, batch_size=16, outer_iters=2, outer_batch=8, inner_steps=1, per_class=3)
        recs = run(m, sc, device='cpu', seed=0, log=lambda s: None).extras['mnemonics']
        assert made and set(made) == {betas}, (objective, made)
        assert all(r['objective'] == objective and r['pixel_change'] > 0 for r in recs)
        assert (recs[1]['n_old'] > 0) == (objective == 'bilevel')      # split halves: bilevel only

def test_tsne_snapshots_and_plot():
    sc = Scenario(make_synthetic(n_classes=6, n_train=12, n_test=4, size=16), base=2, increment=2)
    m = get_method('mnemonics', epochs=1, batch_size=16, outer_iters=1, outer_batch=8, inner_steps=1, per_class=3)
    run(tsne_watch(m, phases=(1, -1), max_per_class=5, max_context=6), sc, device='cpu', seed=0, log=lambda s: None)
    a, b = m.tsne_snapshots
    assert (a['phase'], b['phase']) == (1, 2) and a['classes'] == b['classes'] == [0, 1, 2, 3]
    assert b['herding'][0].shape == b['mnemonics'][0].shape == b['random'][0].shape == (4 * 3, m.model.out_dim)
    assert b['data'][0].shape[0] == 4 * 5 and set(b['context'][1].tolist()) == {4, 5} and not a['context'][0].shape[0]
    assert not torch.allclose(b['herding'][0], b['mnemonics'][0])      # the mnemonics moved away from their herded start
    fig = plot_mnemonics_tsne([a, b])
    assert len(fig.axes) == 4 and fig.axes[1].get_title() == 'after phase 1: mnemonics (12 exemplars)'

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
    with pytest.raises(CILError, match="'v1'"): MnemonicsConfig(objective='v2')
    with pytest.raises(CILError, match='hyper_chunk'): MnemonicsConfig(hyper_chunk=0)
    with pytest.raises(CILError, match='inner_passes'): MnemonicsConfig(inner_passes=0)
    assert MnemonicsConfig.choices()['objective'] == ['bilevel', 'v1', 'released']   # what --set objective=... accepts
    cfg = MnemonicsConfig().with_settings('objective=v1,hyper_chunk=none')
    assert (cfg.objective, cfg.hyper_chunk, cfg.alpha) == ('v1', None, 0.01)
    with pytest.raises(CILError, match='objective=v2 is not allowed'): MnemonicsConfig().with_settings('objective=v2')
    from cil_nb.cli import prepare
    with pytest.raises(CILError, match="unknown host 'der'"): prepare(method='mnemonics', dataset='synthetic', host='der')
    ms, *_ = prepare(method='mnemonics', dataset='synthetic', host='icarl', out='/tmp/cil_nb_test_mn')
    assert ms[0].cfg.host == 'icarl'
