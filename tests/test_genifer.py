"Genifer: the feature-driven GAN makes images the classifier recognises; no real old-class image is ever used; resume works."
import math
import numpy as np, pytest, torch
from cil_nb.core import CILError
from cil_nb.data import Scenario, load_dataset, make_synthetic
from cil_nb.learner import run, get_method, load_checkpoint
from cil_nb.methods.genifer import Genifer, GeniferConfig, CondGenerator, diff_augment, kd_sep

TINY = dict(epochs=1, batch_size=16, gan_steps=4, gan_batch=8, r1_every=2)

def _tiny_sc():
    return Scenario(make_synthetic(n_classes=6, n_train=24, n_test=8, size=16), base=2, increment=2)

def _R(res): return np.nan_to_num(res.metrics.R('cnn'), nan=-1)

def test_generated_mnist_digits_are_recognised_and_losses_finite():
    "After phase 0 on two mnist5k classes, the frozen classifier labels >= 70% of the EMA generator's samples as their class."
    torch.manual_seed(0)
    sc = Scenario(load_dataset('mnist5k'), base=2, increment=2, seed=1993)
    m = get_method('genifer', epochs=3, gan_steps=120)
    res = run(m, sc, device='cpu', seed=0, phases=1, log=lambda s: None)
    g = m.gan_log[0]
    assert res.metrics.acc('cnn')[0] > 90
    assert g['gen_acc'] >= 70, g['gen_acc']
    for k in ('d', 'g', 'r1'): assert all(math.isfinite(v) for v in g[k]), k
    assert g['steps'] == 120 and g['steps_per_s'] > 0
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
