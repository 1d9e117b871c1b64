"FOSTER: the paper preset is FOSTER's released CIFAR-100 B50 config, the small preset keeps its own; the split hooks still make one FOSTER phase."
import pytest, torch
from cil_nb.cli import _method_config
from cil_nb.data import Scenario, make_synthetic
from cil_nb.learner import run
from cil_nb.methods.foster import Foster, FosterConfig, effective_weights

def test_paper_preset_is_the_released_cifar_b50_config():
    "G-U-N/ECCV22-FOSTER configs/cifar/b50inc10.json, and models/foster.py's optimisers."
    c = FosterConfig()
    assert (c.backbone, c.head, c.batch_size, c.lr, c.momentum, c.weight_decay, c.schedule) == ('resnet32', 'linear', 128, 0.1, 0.9, 5e-4, 'cosine')
    assert (c.base_epochs, c.epochs, c.compress_epochs, c.compress_lr) == (200, 170, 130, None)   # init / boosting / compression epochs
    assert (c.beta1, c.beta2, c.T, c.lambda_okd, c.lambda_fe) == (0.94, 0.97, 2.0, 1.0, 1.0)
    assert (c.memory, c.per_class) == (None, 20)                                                  # memory_per_class 20, fixed_memory true
    assert (c.autoaugment, c.cutout_size, c.brightness, c.pad) == ('cifar10', 16, 63 / 255, 4)     # brightness 63/255, CIFAR10Policy, Cutout 16
    assert (c.alignment, c.feature_net) == ('counts', 'student')
    m = _method_config('foster', 'paper', None, None, None, None)
    assert m.cfg.to_dict() == c.to_dict()

SMALL_OWN = dict(backbone='ci_net', epochs=6, base_epochs=None, compress_epochs=12, batch_size=64, lr=0.05, schedule='onecycle',
                 beta1=0.97, beta2=0.97, autoaugment=None, cutout_size=0, brightness=0.0, memory=None, per_class=20,
                 alignment='counts', feature_net='student')

def test_small_preset_keeps_its_own():
    s = FosterConfig.small()
    assert {k: getattr(s, k) for k in SMALL_OWN} == SMALL_OWN
    assert _method_config('foster', 'small', None, None, None, None).cfg.to_dict() == s.to_dict()
    assert Foster().cfg.to_dict() == s.to_dict()                          # a method made without a config: the small preset

def test_one_phase_boosts_then_compresses():
    sc = Scenario(make_synthetic(n_classes=4, n_train=10, n_test=4, size=16, channels=1), base=2, increment=2)
    m = Foster(FosterConfig.small(epochs=1, compress_epochs=1, batch_size=10, per_class=3))
    res = run(m, sc, device='cpu', seed=0, log=lambda s: None, progress=False)
    assert [set(h) - {'loss'} for h in res.history[1]] == [{'ce', 'fe', 'kd'}, {'bkd'}]
    assert torch.allclose(m.w1.cpu(), effective_weights([3, 3, 10, 10], 0.97))
    assert set(res.heads) >= {'cnn', 'nme', 'teacher'} and m.teacher is None                 # the teacher is dropped after evaluation
    assert res.extras['exemplars_per_class'] == [3.0, 3.0]
