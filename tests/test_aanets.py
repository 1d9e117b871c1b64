"AANets: the frozen stable convolutions never change, the weights learn only when their rate is > 0, resume rebuilds the dual net; the two aggregation forms; the paper's baselines as settings."
import copy, math
import numpy as np, pytest, torch
import torch.nn as nn
import torch.nn.functional as F
from cil_nb.core import CILError
from cil_nb.data import Scenario, make_synthetic
from cil_nb.learner import run
from cil_nb.models import ci_net, CosineHead, count_params
from cil_nb.memory import Budget
from cil_nb.cli import prepare
from cil_nb.methods.aanets import (AANets, AANetsConfig, AANetsNet, DualResNet, ScaledConv2d, MatchedBudget, extra_params,
                                   exemplars_worth)

SC = Scenario(make_synthetic(n_classes=6, n_train=16, n_test=8, size=16), base=2, increment=2)
CFG = AANetsConfig.small(epochs=2, batch_size=8, per_class=4)

class Keep(AANets):
    "Keeps a copy of the phase-0 backbone."
    def before_phase(self, p):
        if p.t == 1: self.phase0 = copy.deepcopy(self.model.backbone)
        super().before_phase(p)

def _levels(net): return [nn.Sequential(net.stem, net.layers[0]), *net.layers[1:]]
def _convs(m, cls): return [c for c in m.modules() if isinstance(c, cls)]

def test_conversion_keeps_the_function_and_loads_from_a_state_dict():
    torch.manual_seed(0)
    net = ci_net(1, input_size=16).eval(); x = torch.randn(3, 1, 16, 16)
    for agg in ('paper', 'released'):
        dual = DualResNet(net, aggregation=agg).eval()
        with torch.no_grad(): torch.testing.assert_close(dual(x), net(x), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(dual.weights().detach().sum(1).numpy(), 1.0)
    m = AANetsNet(ci_net(1, input_size=16), CosineHead(64)).grow(2).to_dual()
    fresh = AANetsNet(ci_net(1, input_size=16), CosineHead(64)).grow(2)
    assert not fresh.dual
    fresh.load_state_dict(m.state_dict())
    assert fresh.dual and set(fresh.state_dict()) == set(m.state_dict())

@pytest.mark.parametrize('host', ['lucir', 'icarl'])
def test_stable_convs_frozen_and_weights_move(host, tmp_path):
    m = Keep(CFG, host=host, alpha_lr=0.02)
    res = run(m, SC, device='cpu', seed=0, log=lambda s: None)
    bb, p0 = m.model.backbone, m.phase0
    for k, (st, pl, old) in enumerate(zip(bb.stable, bb.plastic, _levels(p0))):
        olds = _convs(old, nn.Conv2d)
        assert len(_convs(st, ScaledConv2d)) == len(olds) and not _convs(st, nn.Conv2d)
        for sc_, oc in zip(_convs(st, ScaledConv2d), olds): assert torch.equal(sc_.weight, oc.weight)   # frozen
        assert any(not torch.equal(a.weight, b.weight) for a, b in zip(_convs(pl, nn.Conv2d), olds))   # plastic trained
        assert any(not torch.equal(c.scale, torch.ones_like(c.scale)) for c in _convs(st, ScaledConv2d))  # scales trained
    w = res.extras['aggregation']
    assert w['phase'] == [1, 2]
    assert np.abs(np.array(w['stable']) - 0.5).max() > 1e-4 and np.isfinite(w['stable']).all()
    st_, pl_ = np.array(w['stable']), np.array(w['plastic'])       # projected: each level's pair on the simplex
    np.testing.assert_allclose(st_ + pl_, 1.0, atol=1e-6); assert st_.min() >= 0 and pl_.min() >= 0
    assert all('alpha_ce' in h for ph in res.history[1:] for h in ph)
    if host == 'lucir':   # resume from the checkpoint of phase 1 (a dual network) gives the same run
        run(AANets(CFG, host=host, alpha_lr=0.02), SC, device='cpu', seed=0, out=tmp_path, log=lambda s: None, phases=2)
        res2 = run(AANets(CFG, host=host, alpha_lr=0.02), SC, device='cpu', seed=0, out=tmp_path, resume=True, log=lambda s: None)
        for h in res.heads:
            np.testing.assert_array_equal(np.nan_to_num(res2.metrics.R(h), nan=-1), np.nan_to_num(res.metrics.R(h), nan=-1))
        assert res2.extras['aggregation'] == res.extras['aggregation']

def test_zero_rate_is_the_fixed_dual_branch_baseline():
    res = run(AANets(CFG, alpha_lr=0.), SC, device='cpu', seed=0, log=lambda s: None)
    w = res.extras['aggregation']
    assert w['stable'] == [[0.5] * 3] * 2 and w['plastic'] == [[0.5] * 3] * 2
    assert not any('alpha_ce' in h for ph in res.history for h in ph)

def test_paper_form_is_two_free_weights():
    res = run(AANets(CFG, host='icarl', aggregation='paper', alpha_lr=0.05), SC, device='cpu', seed=0, log=lambda s: None, phases=2)
    s, p = np.array(res.extras['aggregation']['stable']), np.array(res.extras['aggregation']['plastic'])
    assert np.isfinite(s).all() and np.abs(s + p - 1).max() > 1e-4    # two free weights: the sum is not held at 1
    with pytest.raises(CILError, match='half the rate'): AANets(aggregation='paper', project=True)

def test_released_form_is_complementary_and_clamped():
    m = AANets(CFG, alpha_lr=0.05, project=False)                        # unclamped, as the released code
    res = run(m, SC, device='cpu', seed=0, log=lambda s: None, phases=2)
    assert m.model.backbone.alpha.shape == (3,) and m.alpha_lr == 0.05 and not m.clamp
    s, p = np.array(res.extras['aggregation']['stable']), np.array(res.extras['aggregation']['plastic'])
    np.testing.assert_allclose(s + p, 1.0, atol=1e-6); assert np.abs(s - 0.5).max() > 1e-4
    res = run(AANets(CFG, alpha_lr=1e-8), SC, device='cpu', seed=0, log=lambda s: None, phases=2)   # the released fusion_lr
    np.testing.assert_allclose(res.extras['aggregation']['stable'], 0.5, atol=1e-4)
    d = DualResNet(ci_net(3, input_size=16))
    with torch.no_grad(): d.alpha.copy_(torch.tensor([1.5, -0.5, 0.3]))
    np.testing.assert_allclose(d.project().alpha.detach().numpy(), [1.0, 0.0, 0.3])

def test_projected_two_weights_are_the_released_form_at_half_the_rate():
    "Why 'paper' is not projected: one step on (a_s, a_p) put back on the simplex = one step on alpha at half the rate."
    torch.manual_seed(0)
    net = ci_net(3, input_size=16).eval(); x, y = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    two, one = DualResNet(net, aggregation='paper').eval(), DualResNet(net, aggregation='released').eval()
    head = nn.Linear(net.out_dim, 3)
    g2, = torch.autograd.grad(F.cross_entropy(head(two(x)), y), [two.alpha])
    g1, = torch.autograd.grad(F.cross_entropy(head(one(x)), y), [one.alpha])
    torch.testing.assert_close(g1, g2[:, 0] - g2[:, 1])
    lr = 0.7; a = 0.5 - lr * g2
    torch.testing.assert_close(((1 + a[:, 0] - a[:, 1]) / 2).clamp(0, 1), (0.5 - lr / 2 * g1).clamp(0, 1))

class KeepStart(AANets):
    "Keeps the head's rows as they are when phase 1 starts (after imprinting)."
    def before_phase(self, p):
        super().before_phase(p)
        if p.t == 1: self.rows = [w.detach().clone() for w in self.model.head.weights]

@pytest.mark.parametrize('host', ['lucir', 'icarl'])
def test_two_free_copies_at_fixed_weights_stay_equal(host):
    "The README's dual-branch baseline (both branches free, fusion_lr 0): the copies get the same gradient and stay equal."
    m = AANets(CFG, host=host, stable='free', alpha_lr=0.)
    res = run(m, SC, device='cpu', seed=0, log=lambda s: None, phases=2)
    bb = m.model.backbone
    assert not any(isinstance(c, ScaledConv2d) for c in bb.modules())
    assert res.extras['aggregation']['stable'] == [[0.5] * 3]
    for (n, a), (_, b) in zip(bb.stable.named_parameters(), bb.plastic.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)
    assert res.extras['params']['frozen_buffers'] == 0

def test_icarl_host_released_settings_and_bce():
    "AANets on the released code's iCaRL host: cosine head, imprinted new rows, old rows frozen; the paper's BCE loss."
    m = KeepStart(CFG, host='icarl', head='cosine', imprint=True, freeze_old=True, distill='bce')
    res = run(m, SC, device='cpu', seed=0, log=lambda s: None, phases=2)
    assert isinstance(m.model.head, CosineHead)
    assert torch.equal(m.model.head.weights[0], m.rows[0]) and not torch.equal(m.model.head.weights[1], m.rows[1])
    assert set(res.history[1][0]) == {'bce', 'bce_old', 'loss', 'alpha_ce'}
    m = KeepStart(CFG, host='icarl')                                     # the default iCaRL host trains the old rows
    run(m, SC, device='cpu', seed=0, log=lambda s: None, phases=2)
    assert not torch.equal(m.model.head.weights[0], m.rows[0])

@pytest.mark.parametrize('host', ['lucir', 'icarl'])
def test_memory_matched_takes_the_extra_weights_off_the_memory(host):
    net = ci_net(3, input_size=16)
    n_scales = sum(c.scale.numel() for c in DualResNet(net).modules() if isinstance(c, ScaledConv2d))
    extra = extra_params(net); assert extra == count_params(net) + n_scales + 3   # the plastic copy, the scales, alpha
    off = exemplars_worth(extra, (3, 16, 16)); assert off == math.ceil(4 * extra / 768)
    counts = {}
    class Count(AANets):
        def after_phase(self, p): super().after_phase(p); counts[p.t] = self.memory.counts()
    total = off + 14                                                     # 7 a class after phase 0, then 3, then 2
    res = run(Count(CFG, host=host, memory=total, per_class=None, memory_matched=True), SC, device='cpu', seed=0, log=lambda s: None)
    assert [set(c.values()) for c in counts.values()] == [{7}, {3}, {2}]
    assert res.extras['memory'] == {'extra_params': extra, 'exemplars_worth': off, 'matched': True, 'exemplars': 12}
    res = run(AANets(CFG, host=host, memory=total, per_class=None), SC, device='cpu', seed=0, log=lambda s: None, phases=1)
    assert res.extras['memory']['exemplars'] == 2 * 16                  # unmatched: every image of the two classes
    with pytest.raises(CILError, match='memory_matched.*larger memory'):
        run(AANets(CFG, host=host, memory_matched=True), SC, device='cpu', seed=0, log=lambda s: None)
    b = MatchedBudget(Budget(per_class=20), 609)                         # CIFAR-100 B50, ResNet-32: 7 a class, then 13
    assert [b.per_class_after(n) for n in (50, 100)] == [7, 13]

def test_bad_settings_are_clear_errors():
    with pytest.raises(CILError, match='lucir|icarl'): AANets(host='podnet')
    with pytest.raises(CILError, match="'released' or 'paper'"): AANets(aggregation='mean')
    with pytest.raises(CILError, match="'scaled' or 'free'"): AANets(stable='fixed')
    with pytest.raises(CILError, match='iCaRL host'): AANets(distill='bce')
    with pytest.raises(CILError, match='alpha_lr'): AANets(alpha_lr=-0.1)
    with pytest.raises(CILError, match='--host'): prepare(method='aanets', dataset='synthetic', host='podnet', out='/tmp')
    methods = prepare(method='aanets', dataset='synthetic', host='icarl', out='/tmp')[0]
    assert methods[0].cfg.host == 'icarl' and methods[0].head_name == 'linear'
    with pytest.raises(CILError, match='needs a memory'):
        run(AANets(CFG, per_class=0), SC, device='cpu', seed=0, log=lambda s: None, phases=2)

# ---- the presets: the paper preset holds the paper's values (the released code's where the paper is silent), the small one its own
from cil_nb.cli import _method_config

def test_paper_preset_is_the_papers_or_the_released_codes():
    c = AANetsConfig()
    assert (c.aggregation, c.alpha_lr, c.project, c.stable_scale) == ('paper', 1e-8, False, 'released')   # two weights a level; fusion_lr, no clamping, Conv2dMtl
    assert (c.alpha_init, c.stable, c.memory_matched, c.host) == (0.5, 'scaled', False, 'lucir')
    assert (c.backbone, c.epochs, c.batch_size, c.lr, c.schedule, c.milestones, c.momentum, c.weight_decay) == \
           ('resnet32', 160, 128, 0.1, 'multistep', (0.5, 0.75), 0.9, 5e-4)                           # 160 epochs, x0.1 at 80 and 120
    assert (c.lambda_base, c.K, c.margin, c.lw_mr, c.per_class, c.memory) == (5.0, 2, 0.5, 1.0, 20, None)
    m = _method_config('aanets', 'paper', None, None, None, None)                                         # what --preset paper builds
    assert (m.alpha_lr, m.clamp, m.cfg.aggregation, m.cfg.stable_scale) == (1e-8, False, 'paper', 'released')

def test_paper_preset_builds_two_free_weights_and_out_in_scales():
    m = AANets(AANetsConfig(), backbone='ci_net'); m.setup(SC, 'cpu'); m.model.grow(2).grow(2)           # dual from the second growth
    bb = m.model.backbone
    assert bb.alpha.shape == (3, 2) and torch.equal(bb.alpha.detach(), torch.full((3, 2), 0.5))
    convs = _convs(bb.stable, ScaledConv2d)
    assert convs and all(c.scale.shape == (*c.weight.shape[:2], 1, 1) for c in convs)

SMALL_OWN = dict(aggregation='released', alpha_lr=0.005, alpha_init=0.5, project=None, stable='scaled', stable_scale='channel',
                 memory_matched=False)

def test_small_preset_keeps_its_own():
    s = AANetsConfig.small()
    assert {k: getattr(s, k) for k in SMALL_OWN} == SMALL_OWN
    assert (s.backbone, s.epochs, s.batch_size, s.lr, s.schedule, s.per_class, s.memory) == ('ci_net', 6, 64, None, 'onecycle', 20, None)
    m = _method_config('aanets', 'small', None, None, None, None)
    assert (m.alpha_lr, m.clamp, m.cfg.to_dict()) == (0.005, True, s.to_dict())
    assert AANets().cfg.to_dict() == s.to_dict()                          # a method made without a config: the small preset
    d = DualResNet(ci_net(3, input_size=16), scale=s.stable_scale)
    assert all(c.scale.shape[1] == 1 for c in _convs(d.stable, ScaledConv2d))   # one scale per output channel
