"Class Impression: synthesis works on its own, and the method keeps and uses no real image of an old class."
import dataclasses
import pytest
import torch
from cil_nb.core import CILError
from cil_nb.data import make_synthetic, Scenario
from cil_nb.models import copy_frozen
from cil_nb.learner import run, load_checkpoint
from cil_nb.methods.class_impression import (ClassImpression, CIConfig, SynthConfig, synthesize, assert_data_free,
                                              class_mean_images)


@pytest.fixture(scope='module')
def setting():
    torch.manual_seed(0)
    data = make_synthetic(n_classes=6, n_train=40, n_test=10, size=16)
    sc = Scenario(data, base=2, increment=2)
    cfg = CIConfig.small(epochs=4, batch_size=16, syn_per_class=6, syn_batch=12, syn_iters=12)
    return data, sc, cfg


@pytest.fixture(scope='module')
def tiny():
    "A cheaper setting for whole runs: 24 images a class, 1 epoch a phase, 5 synthesis steps."
    data = make_synthetic(n_classes=6, n_train=24, n_test=6, size=16)
    sc = Scenario(data, base=2, increment=2)
    return data, sc, CIConfig.small(epochs=1, batch_size=16, syn_per_class=4, syn_batch=8, syn_iters=5)


@pytest.fixture(scope='module')
def phase0(setting):
    data, sc, cfg = setting
    m = ClassImpression(cfg)
    run(m, sc, device='cpu', seed=0, phases=1, log=lambda s: None)
    return m


def test_synthesis_matches_bn_and_class(setting, phase0):
    data, sc, cfg = setting
    frozen = copy_frozen(phase0.model)
    scfg = SynthConfig(per_class=16, batch=32, iters=60, jitter=1, warmup=0.05)
    imgs, hist = synthesize(frozen, [0, 1], phase0.mean_images, scfg, mean_std=data.mean_std(), flip=data.flip, seed=0)
    assert imgs.shape == (32, data.channels, 16, 16) and imgs.min() >= 0 and imgs.max() <= 1
    assert hist['labels'].tolist() == [0] * 16 + [1] * 16
    bn = hist['bn']
    assert sum(bn[-6:]) / 6 < 0.8 * sum(bn[:6]) / 6, (bn[:3], bn[-3:])          # the BN-moment loss falls
    with torch.no_grad(): pred = frozen(phase0.prep(imgs)).argmax(1)
    assert (pred == hist['labels']).float().mean() >= 0.8                         # the frozen model agrees
    assert all(p.requires_grad is False for p in frozen.parameters())             # left as it was


def test_synthesize_errors(phase0):
    frozen = copy_frozen(phase0.model)
    with pytest.raises(CILError, match='one C x H x W image per class'):
        synthesize(frozen, [0, 1, 2], phase0.mean_images, SynthConfig(iters=1))
    with pytest.raises(CILError, match='eval mode'):
        synthesize(frozen.train(), [0, 1], phase0.mean_images, SynthConfig(iters=1))


def test_nothing_real_is_kept(tiny, tmp_path):
    data, sc, cfg = tiny
    m = ClassImpression(cfg)
    res = run(m, sc, device='cpu', seed=0, out=tmp_path, log=lambda s: None)
    assert m.uses_memory is False and res.heads == ['cnn'] and len(m.memory.counts()) == 0
    # each phase trained on real images of its own classes only
    for t, idx in m.used_idx.items():
        y = sc.train_y[idx]
        assert ((y >= sc[t].n_old) & (y < sc[t].n_seen)).all()
    # the kept state is the model plus mean images; none of it is a real image
    st = m.extra_state()
    tensors = {k: v for k, v in st.items() if isinstance(v, torch.Tensor)}
    assert set(tensors) == {'mean_images'}
    real = data.train_x.float() / 255
    means = st['mean_images']
    assert torch.allclose(means, class_mean_images(data.train_x, sc.train_y, range(6)), atol=1e-6)
    assert torch.cdist(means.flatten(1), real.flatten(1)).min() > 1e-3
    # the replayed impressions are not real images either
    syn, lab = m.impressions
    assert lab.max() < sc[2].n_old and torch.cdist(syn.flatten(1), real.flatten(1)).min() > 1e-3
    ck = load_checkpoint(tmp_path / 'checkpoint.pt')
    assert ck['extra']['memory'] is None and set(k for k, v in ck['extra'].items() if isinstance(v, torch.Tensor)) == {'mean_images'}
    assert len(res.extras['synthesis']) == 2


def test_guard_refuses_old_images(tiny):
    data, sc, cfg = tiny
    with pytest.raises(CILError, match='data-free guard'):
        assert_data_free(sc, sc[1], sc[0].train_idx[:2])
    assert_data_free(sc, sc[1], sc[1].train_idx)

    class Leaky(ClassImpression):          # a subclass that tries to replay real old images is stopped
        name = 'ci_leaky_test'
        def labelled_idx(self, p):
            idx = torch.cat([p.train_idx, self.sc[0].train_idx]) if p.t > 0 else p.train_idx
            assert_data_free(self.sc, p, idx); return idx
    with pytest.raises(CILError, match='data-free guard'):
        run(Leaky(cfg), sc, device='cpu', seed=0, phases=2, log=lambda s: None)


def test_config_errors():
    with pytest.raises(CILError, match="'shipped'"): CIConfig(variant='released')
    with pytest.raises(CILError, match='cosine head'): CIConfig(head='linear')
    with pytest.raises(CILError, match='rs_ratio'): CIConfig(rs_ratio=1.0)
    assert CIConfig().synth.iters == 5000 and CIConfig.small().synth.iters == 150


def test_idc_images_come_from_the_training_split_never_val(tiny):
    "With a val split present, IdC's unlabelled images are carved from the new classes' training images; wiping val changes nothing."
    data, sc, cfg = tiny
    assert data.val_x is not None
    wiped = dataclasses.replace(data, val_x=torch.full_like(data.val_x, 255))
    sc_w = Scenario(wiped, base=2, increment=2)
    a, b = ClassImpression(cfg), ClassImpression(cfg)
    ra = run(a, sc, device='cpu', seed=3, log=lambda s: None)
    rb = run(b, sc_w, device='cpu', seed=3, log=lambda s: None)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()): assert torch.equal(pa, pb)
    p = sc[1]; lab, unl = a._carved(p)
    assert torch.equal(a.target_images(p), data.train_x[unl])
    assert set(unl.tolist()) <= set(p.train_idx.tolist()) and not set(unl.tolist()) & set(a.labelled_idx(p).tolist())
    with pytest.raises(CILError, match='never the validation'): CIConfig(idc_target='seen')


def test_per_loss_ablation_switches(tiny):
    "w_idc=0 / w_mr=0 / w_dis=0 / class_weighted=False reach the loss; method:key=value variants parse them."
    from cil_nb.cli import parse_method
    data, sc, cfg = tiny
    m = ClassImpression(dataclasses.replace(cfg, w_idc=0.0, w_mr=0.0, w_dis=0.0, class_weighted=False))
    res = run(m, sc, device='cpu', seed=4, log=lambda s: None)
    for h in res.history[1:]:
        for e in h: assert 'idc' not in e and e['mr'] == 0 and e['dis'] == 0
    assert m.cw is None and torch.equal(m.labelled_idx(sc[1]), sc[1].train_idx)   # no carved slice without IdC
    name, kv = parse_method('class_impression:w_idc=0:class_weighted=False')
    c = CIConfig.small().with_settings(kv)
    assert name == 'class_impression' and c.w_idc == 0 and c.class_weighted is False


def test_cn_groups_and_final_relu(tiny):
    "norm='cn' uses at most cn_groups GroupNorm groups (no instance norm at 16/32 channels), warns when it would degenerate; ci_net keeps its final ReLU."
    import warnings
    from cil_nb.models import ContinualNorm
    data, sc, cfg = tiny
    m = ClassImpression(dataclasses.replace(cfg, norm='cn', last_relu=True)); m.setup(sc, 'cpu', 0)
    gns = [mod.gn for mod in m.model.modules() if isinstance(mod, ContinualNorm)]
    assert gns and all(g.num_groups == 4 for g in gns)
    with pytest.warns(UserWarning, match='instance norm'):
        ClassImpression(dataclasses.replace(cfg, norm='cn', cn_groups=64)).setup(sc, 'cpu', 0)
    m.model.eval()
    with torch.no_grad(): f = m.model.features(torch.rand(4, data.channels, *data.size))
    assert f.min() >= 0                                            # the final ReLU is kept
    m2 = ClassImpression(dataclasses.replace(cfg, last_relu=False)); m2.setup(sc, 'cpu', 0); m2.model.eval()
    with torch.no_grad(): assert m2.model.features(torch.rand(4, data.channels, *data.size)).min() < 0


def test_presets_paper_is_the_released_codes_and_small_keeps_its_own():
    "The paper preset (the dataclass defaults) is the released code's recipe; the small preset changes exactly its own fields."
    p, s = CIConfig.preset(small=False), CIConfig.preset(small=True)
    assert (p.cw_counts, p.last_relu) == ('stored', True)                     # the released counting and net
    assert (p.backbone, p.head, p.norm, p.epochs, p.batch_size, p.lr, p.momentum, p.weight_decay, p.pad, p.train_flip,
            p.per_class, p.memory) == ('ci_net', 'cosine', 'bn', 100, 40, 0.1, 0.0, 0.0, 0, False, None, None)
    assert (p.variant, p.lambda_base, p.K, p.margin, p.lw_mr, p.idc_weight, p.idc_tau, p.rs_ratio, p.cn_groups) == \
        ('paper', 5.0, 1, 0.3, 1.0, 1.0, 1.0, 0.66, 4)
    syn = p.synth
    assert (syn.per_class, syn.batch, syn.iters, syn.lr, syn.beta1, syn.beta2, syn.cos_scale, syn.noise, syn.jitter, syn.flip) == \
        (200, 40, 5000, 0.05, 0.5, 0.9, 0.2, 0.1, 30, True)
    assert (round(syn.warmup * syn.iters), syn.w_ce, syn.w_bn, syn.w_bn_first, syn.w_tv, syn.w_l2) == (100, 1.0, 1.0, 10.0, 0.01, 0.1)
    pd, sd = p.to_dict(), s.to_dict()
    assert {k: v for k, v in sd.items() if v != pd[k]} == dict(
        epochs=6, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule='onecycle', pad=4, cw_counts='sampled',
        last_relu=False, syn_per_class=20, syn_iters=150, syn_warmup=0.05, syn_jitter=2)
    assert list(sd) == list(pd)                                             # one field order for both
    assert CIConfig.paper_protocol == dict(base=2, increment=2, per_class=None)
