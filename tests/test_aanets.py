"AANets: the frozen stable convolutions never change, the weights learn only when their rate is > 0, resume rebuilds the dual net."
import copy
import numpy as np, pytest, torch
import torch.nn as nn
from cil_nb.core import CILError
from cil_nb.data import Scenario, make_synthetic
from cil_nb.learner import run
from cil_nb.models import ci_net, CosineHead
from cil_nb.cli import prepare
from cil_nb.methods.aanets import AANets, AANetsConfig, AANetsNet, DualResNet, ScaledConv2d

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

def test_free_weights_leave_the_simplex_without_projection():
    res = run(AANets(CFG, host='icarl', alpha_lr=0.05, project=False), SC, device='cpu', seed=0, log=lambda s: None, phases=2)
    s, p = np.array(res.extras['aggregation']['stable']), np.array(res.extras['aggregation']['plastic'])
    assert np.isfinite(s).all() and np.abs(s + p - 1).max() > 1e-4    # two free weights: the sum is not held at 1

def test_released_form_is_complementary():
    m = AANets(CFG, aggregation='released')
    res = run(m, SC, device='cpu', seed=0, log=lambda s: None, phases=2)
    assert m.model.backbone.alpha.shape == (3,) and m.alpha_lr == 1e-8
    s, p = np.array(res.extras['aggregation']['stable']), np.array(res.extras['aggregation']['plastic'])
    np.testing.assert_allclose(s + p, 1.0, atol=1e-6); np.testing.assert_allclose(s, 0.5, atol=1e-4)

def test_bad_settings_are_clear_errors():
    with pytest.raises(CILError, match='lucir|icarl'): AANets(host='podnet')
    with pytest.raises(CILError, match="'paper' or 'released'"): AANets(aggregation='mean')
    with pytest.raises(CILError, match='alpha_lr'): AANets(alpha_lr=-0.1)
    with pytest.raises(CILError, match='--host'): prepare(method='aanets', dataset='synthetic', host='podnet', out='/tmp')
    methods = prepare(method='aanets', dataset='synthetic', host='icarl', out='/tmp')[0]
    assert methods[0].cfg.host == 'icarl' and methods[0].head_name == 'linear'
    with pytest.raises(CILError, match='needs a memory'):
        run(AANets(CFG, per_class=0), SC, device='cpu', seed=0, log=lambda s: None, phases=2)
