"Genifer: the feature-driven GAN makes images the classifier recognises; no real old-class image is ever used; resume works."
import math
import numpy as np, pytest, torch
from cil_nb.core import CILError
from cil_nb.data import Scenario, load_dataset, make_synthetic
from cil_nb.learner import run, get_method, load_checkpoint
from cil_nb.methods.genifer import Genifer, GeniferConfig, CondGenerator, diff_augment, kd_sep
from dataclasses import asdict

TINY = dict(epochs=1, batch_size=16, gan_steps=4, gan_batch=8, r1_every=2)

def _tiny_sc():
    return Scenario(make_synthetic(n_classes=6, n_train=24, n_test=8, size=16), base=2, increment=2)

def _R(res): return np.nan_to_num(res.metrics.R('cnn'), nan=-1)

def test_generated_mnist_digits_are_recognised_and_losses_finite():
    "After phase 0 on two mnist5k classes, the frozen classifier labels >= 70% of the EMA generator's samples as their class."
    torch.manual_seed(0)
    sc = Scenario(load_dataset('mnist5k'), base=2, increment=2, seed=1993)
    m = get_method('genifer', epochs=3, gan_steps=200)   # 120 steps gave 61-83 % on a CPU without AVX512, 200 gave 94-100 (seeds 0, 1)
    res = run(m, sc, device='cpu', seed=0, phases=1, log=lambda s: None)
    g = m.gan_log[0]
    assert res.metrics.acc('cnn')[0] > 90
    assert g['gen_acc'] >= 70, g['gen_acc']
    for k in ('d', 'g', 'r1'): assert all(math.isfinite(v) for v in g[k]), k
    assert g['steps'] == 200 and g['steps_per_s'] > 0
    assert res.extras['gan']['0']['gen_acc'] == g['gen_acc']

class Wiper(Genifer):
    "Genifer that overwrites every training image of the old classes before each phase."
    name = 'genifer_wiper'
    def before_phase(self, p):
        super().before_phase(p)
        self.train_x = self.train_x.clone(); self.train_x[self.train_y < p.n_old] = 255   # clone: do not touch the data set

def test_no_real_old_class_image_is_used():
    "Wiping the old classes' training images changes nothing: replay comes from the generator only."
    sc = _tiny_sc(); cfg = GeniferConfig.small(**TINY)
    a, b = Genifer(cfg), Wiper(cfg)
    ra = run(a, sc, device='cpu', seed=1, log=lambda s: None)
    rb = run(b, sc, device='cpu', seed=1, log=lambda s: None)
    assert Genifer.uses_memory is False and ra.heads == ['cnn']
    assert a.memory.counts() == {} and a.training_data(sc[2])[1].min() >= sc[2].n_old
    np.testing.assert_array_equal(_R(ra), _R(rb))
    for pa, pb in zip(a.model.parameters(), b.model.parameters()): assert torch.equal(pa, pb)
    assert set(ra.history[1][0]) == {'ce', 'kd', 'feat', 'loss'}
    assert all(math.isfinite(v) for h in ra.history for e in h for v in e.values())

def test_resume_restores_the_generator(tmp_path):
    "A run stopped after phase 1 resumes (generator, EMA and discriminator from the checkpoint) to the same matrix."
    sc = _tiny_sc(); cfg = GeniferConfig.small(**TINY)
    full = run(Genifer(cfg), sc, device='cpu', seed=2, log=lambda s: None)
    run(Genifer(cfg), sc, device='cpu', seed=2, out=tmp_path, phases=2, log=lambda s: None)
    ck = load_checkpoint(tmp_path / 'checkpoint.pt')
    assert {'G', 'G_ema', 'D'} <= set(ck['extra']) and ck['extra']['gan_trained']
    res = run(Genifer(cfg), sc, device='cpu', seed=2, out=tmp_path, resume=True, log=lambda s: None)
    np.testing.assert_array_equal(_R(res), _R(full))

def test_bad_settings_are_refused():
    sc = _tiny_sc()
    with pytest.raises(CILError, match='feat_layer'): run(Genifer(GeniferConfig.small(**TINY, feat_layer=3)), sc, device='cpu', log=lambda s: None)
    with pytest.raises(CILError, match='gen_ratio'): run(Genifer(GeniferConfig.small(**TINY, gen_ratio=1.0)), sc, device='cpu', log=lambda s: None)
    with pytest.raises(CILError, match='inc_optimizer'): run(Genifer(GeniferConfig.small(**TINY, inc_optimizer='adam')), sc, device='cpu', log=lambda s: None)
    with pytest.raises(CILError, match='labels must lie'): CondGenerator(4, 1, (16, 16)).sample(torch.tensor([4]))

def test_pieces():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    diff_augment(x).sum().backward(); assert x.grad.abs().sum() > 0
    z, r = torch.randn(5, 6), torch.randn(5, 4)
    assert kd_sep(z, r) > 0 and torch.isfinite(kd_sep(z, r))
    g = CondGenerator(10, 3, (28, 28)); img = g.sample(torch.arange(10))
    assert img.shape == (10, 3, 28, 28) and 0 <= img.min() and img.max() <= 1

def test_cli_records_diversity_and_independent_accuracy(tmp_path):
    "`cil_nb_run --method genifer` writes `diversity` and `independent_acc` to results.json for every phase after the first."
    import json, os, subprocess
    from conftest import console
    out = tmp_path / 'o'
    r = subprocess.run([*console('cil_nb_run', 'cil_nb.cli'), '--method', 'genifer', '--dataset', 'synthetic', '--base', '2',
                        '--increment', '2', '--epochs', '1', '--device', 'cpu', '--out', str(out),
                        '--set', 'gan_steps=4,gan_batch=8,r1_every=2,measure_per_class=8,measure_epochs=1'],
                       capture_output=True, text=True, timeout=600, env={**os.environ, 'IN_TEST': '1', 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr
    res = json.loads((out / 'genifer' / 'results.json').read_text())
    n = len(res['metrics']['phase_sizes']); assert n >= 3
    for k in ('diversity', 'independent_acc'):
        assert sorted(res['extras'][k], key=int) == [str(t) for t in range(1, n)], (k, res['extras'].get(k))
    assert all(v > 0 for v in res['extras']['diversity'].values())
    assert all(0 <= v <= 100 for v in res['extras']['independent_acc'].values())
    for t, q in res['extras']['gan_quality'].items():   # class by class: one figure per old class, averaging to the total
        pc = q['independent_acc_per_class']; n_old = sum(res['metrics']['phase_sizes'][:int(t)])
        assert len(pc) == n_old and abs(sum(pc) / n_old - q['independent_acc']) < 1e-3, (t, pc, q['independent_acc'])

def test_mode_seeking_and_measures():
    "The mode-seeking term is small for varied pairs and large for identical ones; mean_pairwise is the mean distinct-pair distance."
    from cil_nb.methods.genifer import mode_seeking, mean_pairwise
    from cil_nb.metrics import train_independent
    z = torch.randn(8, 4); same = torch.rand(1, 1, 4, 4).expand(8, 1, 4, 4)
    assert mode_seeking(same, z) > 100 * mode_seeking(torch.rand(8, 1, 4, 4), z)
    x = torch.tensor([[0., 0.], [3., 4.]]); assert abs(mean_pairwise(x) - 5.0) < 1e-6
    # the independent classifier learns two easy classes (dark vs bright images)
    g = torch.Generator().manual_seed(0)
    xi = torch.cat([torch.rand(40, 1, 8, 8, generator=g) * 0.3, 0.7 + torch.rand(40, 1, 8, 8, generator=g) * 0.3])
    yi = torch.arange(2).repeat_interleave(40)
    net = train_independent(xi, yi, 2, epochs=5, batch=16, seed=0)
    with torch.no_grad(): assert (net(xi).argmax(1) == yi).float().mean() >= 0.9

def test_paper_optimisers():
    "The first task's SGD uses Nesterov momentum; later tasks use RAdam with decoupled weight decay (the paper's)."
    sc = _tiny_sc(); m = Genifer(GeniferConfig.small(**{**TINY, 'inc_optimizer': 'radam', 'inc_lr': 1e-4}))
    run(m, sc, device='cpu', seed=0, phases=2, log=lambda s: None)
    opt0, _ = m.optimizer(sc[0], 1); opt1, _ = m.optimizer(sc[1], 1)
    assert isinstance(opt0, torch.optim.SGD) and all(g['nesterov'] for g in opt0.param_groups)
    assert isinstance(opt1, torch.optim.RAdam) and all(g['decoupled_weight_decay'] for g in opt1.param_groups)
    p = GeniferConfig.preset(small=False); assert p.nesterov and p.decoupled_wd and p.inc_optimizer == 'radam'

# The paper preset as it is: the released code's numbers where this package's GAN has the same knob, the package's own
# elsewhere (widths, DiffAugment, ema_rampup; R1 is scaled by r1_every, 17 times the released weight). The notebook's
# preset table lists each departure; change this test and that table together.
PAPER_PRESET = dict(backbone='resnet18', head='linear', epochs=100, batch_size=32, lr=0.1, momentum=0.9, weight_decay=5e-4,
                    schedule='multistep', milestones=(0.3, 0.6, 0.8), gamma=0.2, memory=None, per_class=None, feat_layer=2,
                    ce_w=0.02, kd_w=0.98, feat_w=1.0, T=1.0, gen_ratio=0.5, inc_optimizer='radam', inc_lr=1e-4,
                    nesterov=True, decoupled_wd=True, z_dim=512, g_width=128, d_width=128, g_modulate=False,
                    gan_steps=80_000, base_gan_steps=250_000, gan_batch=64, g_lr=0.0025, d_lr=0.0025, r1_gamma=0.5,
                    r1_every=16, gdist_w=10.0, ema_kimg=500.0, ema_rampup=0.05, translation=0.125, cutout=0.5, color=True,
                    pix_w=0.0, cls_w=0.0, ms_w=0.0)
# what the small preset changes (per_class=20 comes from the shared small preset; Genifer keeps no exemplars anyway)
SMALL_CHANGES = dict(backbone='ci_net', epochs=6, batch_size=64, lr=0.05, schedule='onecycle', milestones=(0.5, 0.75),
                     gamma=0.1, per_class=20, feat_layer=1, inc_optimizer='sgd', inc_lr=0.05, z_dim=64, g_width=32,
                     d_width=32, gan_steps=200, base_gan_steps=None, gan_batch=32, g_lr=0.002, d_lr=0.002, ema_kimg=10.0,
                     gdist_w=2.0, pix_w=2.0, cls_w=0.1, ms_w=0.003)

def test_paper_and_small_presets_as_they_are():
    "The paper preset's values and exactly what the small preset changes; `--preset paper` is the same config."
    p, s = asdict(GeniferConfig.preset(small=False)), asdict(GeniferConfig.preset())
    assert {k: p[k] for k in PAPER_PRESET} == PAPER_PRESET
    assert {k: v for k, v in s.items() if p[k] != v} == SMALL_CHANGES
    assert GeniferConfig.paper_protocol == dict(base=50, increment=10, per_class=None)
    assert Genifer.uses_memory is False
