"Unit tests of cil_nb.methods.cim (compression, memory accounting, rational activations): tiny inputs, a few seconds."
import math, tempfile
import pytest, torch
from cil_nb.core import CILError
from cil_nb.data import make_synthetic, Scenario
from cil_nb.learner import run, get_method
from cil_nb.memory import herding
from cil_nb.methods.foster import *
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


# ---- the switches toward the released code (CIMConfig / FosterConfig): each one changes what it says it changes
import torch.nn.functional as F
from torch.func import functional_call
from cil_nb.memory import extract_features, nme_predict
from cil_nb.methods.cim import CIMConfig, FosterConfig

KW = dict(per_class=3, epochs=1, compress_epochs=1, batch_size=10, cam_interval=1, meta_batch=4)
FOSTER_KEYS = set(FosterConfig.__dataclass_fields__)


def _scenario():
    return Scenario(make_synthetic(n_classes=4, n_train=10, n_test=4, size=16, channels=1), base=2, increment=2)


def at_phase1(method='cim', boosted=True, **kw):
    "A method trained through phase 0, with phase 1 begun (its teacher built) and, if `boosted`, trained (1 epoch a stage)."
    sc = _scenario(); kw = {**KW, **kw}
    m = get_method(method, **({k: v for k, v in kw.items() if k in FOSTER_KEYS} if method == 'foster' else kw))
    run(m, sc, device='cpu', seed=0, log=lambda s: None, progress=False, phases=1)
    p = sc[1]; m.before_phase(p)
    if boosted: m.fit_phase(p)
    return m, sc, p


@pytest.mark.parametrize('kw, msg', [(dict(mask_stage='both'), 'mask_stage must be'), (dict(lookahead_bn='frozen'), 'lookahead_bn must be'),
                                     (dict(box_net='old'), 'box_net must be'), (dict(alignment='sum'), 'alignment must be'),
                                     (dict(feature_net='old'), 'feature_net must be')])
def test_switches_reject_unknown_values(kw, msg):
    with pytest.raises(CILError, match=msg): get_method('cim', **KW, **kw).setup(_scenario(), 'cpu')


def test_switches_parse_as_bench_variants():
    c = CIMConfig.preset().with_settings('mask_stage=boost,lookahead_bn=eval,boost_compression=true,box_net=teacher,alignment=nominal,feature_net=teacher')
    assert (c.mask_stage, c.lookahead_bn, c.boost_compression, c.box_net, c.alignment, c.feature_net) == ('boost', 'eval', True, 'teacher', 'nominal', 'teacher')
    d = CIMConfig.preset()   # the small preset: this package's choices
    assert (d.mask_stage, d.lookahead_bn, d.boost_compression, d.box_net, d.alignment, d.feature_net) == ('compress', 'train', False, 'student', 'counts', 'student')
    with pytest.raises(CILError, match='not allowed'): CIMConfig.preset().with_settings('box_net=old')
    assert FosterConfig.preset().with_settings('alignment=nominal').alignment == 'nominal'


# the settings where the paper is silent: the paper preset takes the released code's (xfflzl/CIM-CIL), the small one this package's
RELEASED = dict(mask_stage='boost', lookahead_bn='eval', boost_compression=True, box_net='teacher', alignment='nominal', feature_net='teacher',
                degrees=(5, 4), cam_interval=40)
OURS = dict(mask_stage='compress', lookahead_bn='train', boost_compression=False, box_net='student', alignment='counts', feature_net='student',
            degrees=(6, 5), cam_interval=2)


def test_paper_preset_takes_the_released_codes_choices_and_the_small_preset_ours():
    paper, small = CIMConfig.preset(small=False), CIMConfig.preset()
    assert {k: getattr(paper, k) for k in RELEASED} == RELEASED
    assert {k: getattr(small, k) for k in OURS} == OURS
    assert {k: getattr(CIMConfig(), k) for k in RELEASED} == RELEASED           # the dataclass defaults are the paper preset
    assert set(CIMConfig.SMALL) == set(OURS)                                  # CIM's own small-preset overrides: these, no more
    # the paper's own numbers (methods.md 5.2-5.3)
    assert (paper.tau, paper.eta, paper.div_coef, paper.reg_coef, paper.meta_lr, paper.meta_wd, paper.lr_ratio, paper.meta_batch,
            paper.meta_iters, paper.clip, paper.aug_step, paper.beta1, paper.beta2, paper.memory, paper.batch_size) == \
           (0.6, 4.0, 0.2, 0.1, 0.01, 5e-4, 0.1, 16, 0.5, 1.0, 0.1, 0.97, 0.97, 2000, 256)
    assert (paper.base_epochs, paper.epochs, paper.compress_epochs) == (200, 170, 130)


def test_the_paper_presets_switches_run_together():
    "The paper preset's switches, on the small schedule: the bilevel step moves into boosting, NME takes the teacher's features."
    m = get_method('cim', **KW, **{k: v for k, v in RELEASED.items() if k != 'cam_interval'})
    run(m, _scenario(), device='cpu', seed=0, log=lambda s: None, progress=False)
    assert sorted({d['stage'] for d in m.meta_log}) == ['base', 'boost']
    assert m.masknet.acts[0].extra_repr() == 'degrees (5, 4)'
    assert all(v <= 3 + 1e-9 for v in m.memory.cost().values())
    assert m.means.shape[1] == 2 * m.model.backbone.out_dim                   # NME on both backbones' features


def test_alignment_nominal_counts_each_old_class_as_the_memory_a_class():
    for al in ('counts', 'nominal'):
        m, sc, p = at_phase1(alignment=al, boosted=False)
        old0 = sc[0].train_idx[m.train_y[sc[0].train_idx] == 0][:7]     # class 0 holds 7 compressed exemplars, 3 units' worth
        m.memory.add(0, m.train_x[old0], old0, torch.tensor([[4, 8, 4, 8]] * 7))
        assert m.memory.cost()[0] <= 3
        x, y = m.training_data(p)
        n = m.class_counts(y, p).cpu()
        assert n[p.n_old:].tolist() == [10, 10]                             # new classes: their counts either way
        assert n[:p.n_old].tolist() == ([7, len(m.memory.x[1])] if al == 'counts' else [3, 3])
        m.fit_phase(p)                                                      # the weights of both stages come from these counts
        assert torch.allclose(m.w1.cpu(), effective_weights(n, m.cfg.beta1)) and torch.allclose(m.w2.cpu(), effective_weights(n, m.cfg.beta2))


def test_feature_net_teacher_herds_and_runs_nme_on_the_teachers_features():
    m, sc, p = at_phase1('foster', feature_net='teacher')
    t, d = m.teacher, m.model.out_dim
    m.after_phase(p)
    for lab in p.labels:
        idx = p.train_idx[m.train_y[p.train_idx] == lab]
        f = extract_features(t.features, m.train_x[idx], m.prep)
        assert f.shape[1] == 2 * d
        assert torch.equal(m.memory.idx[lab], idx[herding(f, 3)])
    assert m.means.shape == (p.n_seen, 2 * d)
    xt = m.test_x[p.test_idx]
    pred = m.predict_heads(xt, ['cnn', 'nme'])
    assert torch.equal(pred['nme'], nme_predict(extract_features(t.features, xt, m.prep), m.means))
    assert torch.equal(pred['cnn'], m.predict(xt, 'cnn'))
    m2, _, p2 = at_phase1('foster'); m2.after_phase(p2)                     # the default: the student's features
    assert m2.means.shape == (p2.n_seen, d)


def _two_batches(m, p, n=4):
    x, y = m.training_data(p)
    i = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:2 * n]
    return m.prep(x[i[:n]]), y[i[:n]], m.prep(x[i[n:]]), y[i[n:]]


def _mask_step(m, p, batch, stage='compress'):
    "One bilevel update of phi (inner rate 0.01, Adam at 0.01, clip 1), as the mask step takes them."
    opt = torch.optim.Adam(m.masknet.phi(), lr=0.01)
    return m.mask_steps(p, [batch], 0.01, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.), 1.0, stage)

def test_mask_stage_boost_trains_phi_on_the_teacher_with_the_boosting_loss():
    m, sc, p = at_phase1(mask_stage='boost', lookahead_bn='eval', boosted=False)
    x, y = m.training_data(p); m.w1 = effective_weights(m.class_counts(y, p), m.cfg.beta1)   # as fit_phase sets it
    xb, yb, xb2, yb2 = _two_batches(m, p)
    tm = m.teacher_masknet()
    phi0, old0 = [q.detach().clone() for q in m.masknet.phi()], [q.clone() for q in m.old_acts.parameters()]
    new0 = {k: v.clone() for k, v in m.teacher.new.state_dict().items()}
    with torch.no_grad():                                                   # the inner loss it should use: FOSTER's boosting loss on the blends
        tm.eval(); cam = minmax(tm.cam(tm(xb, rational=True)[-1], yb, xb.shape[-2:]))[:, None]
        want = m.boost_terms(*m.teacher.eval()(cam * xb + (1 - cam) * down_up(xb, m.cfg.eta)), yb)[0].item()
    log = _mask_step(m, p, (xb, yb, xb2, yb2), stage='boost')
    assert abs(log['inner'] - want) < 1e-4
    assert any(not torch.equal(a, b) for a, b in zip(phi0, m.masknet.phi()))   # phi got a gradient (Adam moves nothing without one)
    assert all(torch.equal(a, b) for a, b in zip(old0, m.old_acts.parameters()))   # the old backbone's copy is frozen
    assert all(torch.equal(v, m.teacher.new.state_dict()[k]) for k, v in new0.items())   # theta+ is only a look-ahead
    # in a whole phase the bilevel steps follow the boosting epochs, not the compression ones (the default's)
    for stage in ('boost', 'compress'):
        m, sc, p = at_phase1(mask_stage=stage)
        assert {(d['phase'], d['stage']) for d in m.meta_log} == {(0, 'base'), (1, stage)}


def test_lookahead_bn_eval_uses_the_running_statistics():
    for bn in ('train', 'eval'):
        m, sc, p = at_phase1(lookahead_bn=bn, boosted=False)
        xb, yb, xb2, yb2 = _two_batches(m, p)
        mn = m.masknet
        stats = {k: v.clone() for k, v in m.model.state_dict().items() if 'running' in k or 'num_batches' in k}
        with torch.no_grad():
            mn.eval(); div_eval = F.cross_entropy(mn(xb, rational=True)[0], yb).item()
            mn.train(); bufs = {k: v.clone() for k, v in mn.named_buffers()}
            div_train = F.cross_entropy(functional_call(mn, bufs, (xb,), {'rational': True})[0], yb).item()
        log = _mask_step(m, p, (xb, yb, xb2, yb2))
        assert abs(div_eval - div_train) > 1e-3
        assert abs(log['div'] - (div_eval if bn == 'eval' else div_train)) < 1e-5
        assert all(torch.equal(v, m.model.state_dict()[k]) for k, v in stats.items())   # the network's own statistics never move


def test_boost_compression_compresses_new_data_while_boosting():
    for bc in (False, True):
        m, sc, p = at_phase1(boost_compression=bc, aug_step=1.0, boosted=False)
        x, y = m.training_data(p); n_new = len(p.train_idx)
        m.before_epoch(p, 'boost', 1, 4)                                  # epoch 1 of 4 (cam_interval 1): new boxes, p = 1
        xb = m.batch_images(x, torch.arange(len(x)), 'boost', 1, 4, torch.Generator().manual_seed(0))
        assert torch.equal(xb[n_new:], x[n_new:])                         # exemplars: already compressed by the memory
        if not bc:
            assert m.new_boxes is None and torch.equal(xb, x); continue
        assert torch.equal(m.new_boxes, m.boxes(m.train_x[p.train_idx], m.train_y[p.train_idx]))
        assert torch.equal(xb[:n_new], compress(x[:n_new], m.new_boxes, m.cfg.eta)) and not torch.equal(xb[:n_new], x[:n_new])


def test_box_net_teacher_takes_boxes_from_the_teachers_cam():
    m, sc, p = at_phase1(box_net='teacher', mask='cam')
    idx = p.train_idx; xs, ys = m.train_x[idx], m.train_y[idx]
    t = m.teacher.eval()
    with torch.no_grad():                                                 # the teacher's CAM, by hand: joint head over both backbones' maps
        xp = m.prep(xs)
        cam = class_activation_map(torch.cat([t.old.backbone.fmap(xp), t.new.fmap(xp)], 1), torch.cat(list(t.head.weights)), t.new.pool, ys)
        z = t(xp)[0]
    assert torch.allclose(cam.sum((1, 2)), z.gather(1, ys[:, None])[:, 0] - torch.cat(list(t.head.biases))[ys], atol=1e-4)
    big = F.interpolate(cam[:, None], size=xs.shape[-2:], mode='bilinear', align_corners=False)[:, 0]
    want = boxes_from_maps(big, m.cfg.tau)
    assert torch.allclose(m.cam_maps(xs, ys), big, atol=1e-5) and torch.equal(m.boxes(xs, ys), want)
    m.after_phase(p)                                                      # the new exemplars keep the teacher's boxes
    pos = {int(i): k for k, i in enumerate(idx)}
    for lab in p.labels: assert torch.equal(m.memory.box[lab], want[[pos[int(i)] for i in m.memory.idx[lab]]])
    m.cfg = m.cfg.replace(box_net='student')                              # the default: the student's CAM, another map
    assert not torch.allclose(m.cam_maps(xs, ys), big, atol=1e-3)


def test_mask_cam_uses_the_plain_cam_at_the_same_budget():
    sc, ms = _scenario(), {}
    for mask in ('cim', 'cam'):
        ms[mask] = m = get_method('cim', mask=mask, **KW)
        r = run(m, sc, device='cpu', seed=0, log=lambda s: None, progress=False)
        assert len(r.extras['memory_per_class']) == sc.n_phases and all(u <= 3 + 1e-9 for u in r.extras['memory_per_class'])
        assert all(v <= 3 + 1e-9 for v in m.memory.cost().values())
    mc, mp = ms['cim'], ms['cam']
    init = [q for _ in mp.masknet.acts for q in Rational(*mp.cfg.degrees).parameters()]
    assert mp.meta_log == [] and all(torch.equal(a, b) for a, b in zip(mp.masknet.phi(), init))   # phi never trained
    assert len(mc.meta_log) > 0 and not all(torch.equal(a, b) for a, b in zip(mc.masknet.phi(), init))
    xs, ys = mp.train_x[:8], mp.train_y[:8]
    with torch.no_grad(): plain = mp.masknet.cam(mp.model.backbone.fmap(mp.prep(xs)), ys, xs.shape[-2:])
    assert torch.allclose(mp.cam_maps(xs, ys), plain, atol=1e-6)          # mask='cam': the plain network's CAM
    assert not torch.allclose(mc.cam_maps(xs, ys), mc.cam_maps(xs, ys, rational=False), atol=1e-4)   # 'cim': the rational one
