"Unit tests of cil_nb.methods.cim (compression, memory accounting, rational activations): tiny inputs, a few seconds."
import math, tempfile
import pytest, torch
from cil_nb.core import CILError
from cil_nb.data import make_synthetic, Scenario
from cil_nb.learner import run, get_method
from cil_nb.memory import herding
from cil_nb.methods.cim import *


def test_compressed_equals_original_inside_box():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8, generator=g)
    boxes = torch.tensor([[0, 16, 0, 16], [2, 9, 3, 11], [5, 6, 5, 6], [0, 8, 8, 16], [3, 15, 1, 4]])
    xc = compress(x, boxes, eta=4.0)
    assert xc.dtype == torch.uint8 and xc.shape == x.shape
    for i, (y0, y1, x0, x1) in enumerate(boxes.tolist()):
        assert torch.equal(xc[i, :, y0:y1, x0:x1], x[i, :, y0:y1, x0:x1])
        outside = ~box_mask(boxes[i:i + 1], 16, 16)[0, 0]
        assert torch.equal(xc[i][:, outside], down_up(x[i:i + 1], 4.0)[0][:, outside])
    assert torch.equal(xc[0], x[0])                       # a full box changes nothing
    assert not torch.equal(xc[2], x[2])                   # a 1-pixel box loses the rest's detail


def test_memory_cost_formula():
    b = torch.tensor([[0, 8, 0, 8], [0, 16, 0, 16], [4, 4, 4, 4]])
    c = memory_cost(b, 16, 16, eta=4.0)
    assert torch.allclose(c, torch.tensor([0.25 + 0.75 / 4, 1.0, 0.25], dtype=torch.float64))
    with pytest.raises(CILError, match='eta'): down_up(torch.zeros(1, 1, 4, 4), 0.5)


@pytest.mark.parametrize('budget', [0, 1, 2.5, 5, 7])
def test_budget_never_exceeded(budget):
    torch.manual_seed(budget * 10)
    feats = torch.randn(60, 12)
    costs = memory_cost(boxes_from_maps(torch.rand(60, 16, 16), 0.6), 16, 16, 4.0)
    sel = select_within_budget(feats, costs, budget)
    assert len(sel.unique()) == len(sel)
    assert costs[sel].sum() <= budget + 1e-9
    if len(sel) < 60: assert costs[sel].sum() + costs[herding(feats, len(sel) + 1)[-1]] > budget   # the next pick would not fit
    mem = BoxMemory(4.0).add(0, torch.zeros(60, 1, 16, 16, dtype=torch.uint8), boxes=torch.tensor([[0, 8, 0, 8]] * 60))
    assert mem.reduce(budget).cost()[0] <= budget + 1e-9


def test_compression_keeps_more_exemplars():
    torch.manual_seed(0)
    feats = torch.randn(100, 16)
    maps = torch.zeros(100, 32, 32); maps[:, 10:20, 8:18] = torch.rand(100, 10, 10) + 1
    boxes = boxes_from_maps(maps, 0.6)
    costs = memory_cost(boxes, 32, 32, 4.0)
    assert (costs < 1).all()
    for budget in (5, 10, 20):
        plain = select_within_budget(feats, torch.ones(100, dtype=torch.float64), budget)
        comp = select_within_budget(feats, costs, budget)
        assert len(plain) == budget and len(comp) > len(plain)
        assert torch.equal(comp[:len(plain)], plain)      # same herding order, only longer


def test_rational_matches_relu_at_init():
    r = Rational()
    x = torch.linspace(-3, 3, 2001)
    with torch.no_grad(): err = (r(x) - x.relu()).abs().max().item()
    assert err < 1e-2, err
    assert len(list(r.parameters())) == 2 and all(p.requires_grad for p in r.parameters())


def test_cim_runs_resumes_and_respects_budget():
    data = make_synthetic(n_classes=4, n_train=10, n_test=4, size=16, channels=1)
    sc = Scenario(data, base=2, increment=2)
    kw = dict(per_class=3, epochs=1, compress_epochs=1, batch_size=10, cam_interval=1, meta_batch=4)
    out = tempfile.mkdtemp()
    m = get_method('cim', **kw)
    res = run(m, sc, device='cpu', seed=0, out=out, log=lambda s: None)
    assert set(res.heads) == {'cnn', 'nme', 'teacher'}
    assert all(v <= 3 + 1e-9 for v in m.memory.cost().values())
    assert len(m.memory) >= 3 * 4
    m2 = get_method('cim', **kw)
    res2 = run(m2, sc, device='cpu', seed=0, out=out, resume=True, log=lambda s: None)   # nothing left to do: loads state
    assert torch.equal(torch.cat([p.flatten() for p in m2.masknet.phi()]), torch.cat([p.flatten() for p in m.masknet.phi()]))
    assert m2.memory.cost() == m.memory.cost()
    with pytest.raises(CILError, match="mask must be"): get_method('cim', mask='box', **kw).setup(sc, 'cpu')
