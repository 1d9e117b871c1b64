"""BatchNorm statistics that match the weights (`reestimate_bn`, `Method.refresh_bn`, `Config.bn_refresh`).

After a short phase the running statistics average batches of weights that no longer exist, so the CNN head falls far
below what the same weights give with re-estimated statistics. `run` re-estimates them after every phase's training,
for every method; these tests fail without that step."""
import pytest, torch
from cil_nb.data import load_dataset, make_synthetic, Scenario
from cil_nb.learner import run, get_method, METHODS, reestimate_bn
import cil_nb.methods.baselines, cil_nb.methods.mnemonics, cil_nb.methods.aanets, cil_nb.methods.cim
import cil_nb.methods.genifer, cil_nb.methods.class_impression

def _bns(net):
    net.train()
    out = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    net.eval(); return out

def test_short_phase_cnn_head_needs_reestimated_statistics():
    """ResNet-20, 2 epochs of 16 steps on digits. The same weights either way; with lagging statistics (momentum 0.1:
    about a fifth of the initial ones remain) the running variances are far from what the final weights give on the
    phase's images, and re-estimated they are those. How much the CNN head loses to the lag moves with the CPU type and
    the seed (seed 0: 54 against 98 % on an AVX512 machine, 86 against 98.6 % on an AVX2 one), so the accuracy is
    asserted not to fall, the statistics to match."""
    import copy
    sc = Scenario(load_dataset('digits', size=16), base=4, increment=2)
    acc, ms = {}, {}
    for on in (False, True):
        m = get_method('icarl', None, backbone='resnet20', epochs=2, batch_size=32, memory=40, bn_refresh=on)
        r = run(m, sc, device='cpu', seed=0, log=lambda s: None, progress=False, phases=1)
        acc[on], ms[on] = r.metrics.acc('cnn')[0], m
    for a, b in zip(ms[False].model.parameters(), ms[True].model.parameters()): assert torch.equal(a, b)   # training is the same
    p = ms[True].sc[0]; x = ms[True].train_x[p.train_idx]        # phase 0 trained on these alone
    def var_error(m):
        ref = copy.deepcopy(m.model); reestimate_bn(ref, x, m.bn_prep(p), m.autocast, m.cfg.eval_batch_size)
        return max(((a.running_var - b.running_var).abs() / b.running_var.clamp_min(1e-5)).mean().item() for a, b in zip(_bns(m.model), _bns(ref)))
    lag, fresh = var_error(ms[False]), var_error(ms[True])
    assert fresh < 1e-4 and lag > 0.05, (lag, fresh)   # here: 0.0 and 0.12 (the worst layer's mean relative error)
    assert acc[True] >= 90 and acc[True] >= acc[False], acc

@pytest.mark.parametrize('name', sorted(n for n in METHODS if n != 'replay'))
def test_every_method_ends_its_phase_with_reestimated_statistics(name):
    "After each phase every BatchNorm layer of the model that trains holds the statistics of one re-estimation pass, not of training."
    sc = Scenario(make_synthetic(n_classes=6, n_train=20, n_test=8, size=16), base=2, increment=2)
    kw = dict(epochs=2, batch_size=16, eval_batch_size=4096)
    kw.update({'genifer': dict(gan_steps=4, base_gan_steps=4, measure=False), 'class_impression': dict(syn_iters=3, syn_per_class=4),
               'mnemonics': dict(outer_iters=2)}.get(name, {}))
    m = get_method(name, None, **kw)
    seen = []
    orig = m.refresh_bn
    def spy(p):
        orig(p); seen.append([int(b.num_batches_tracked) for b in _bns(m.model)])
    m.refresh_bn = spy
    run(m, sc, device='cpu', seed=0, log=lambda s: None, progress=False, phases=2)
    assert len(seen) == 2 and all(s and set(s) == {1} for s in seen), seen   # one pass of one batch, after each phase

def test_foster_reestimates_its_teacher_before_distilling():
    "FOSTER's boosted teacher is the compression's target: its new backbone's statistics are re-estimated after boosting."
    import cil_nb.methods.foster as cim   # FOSTER lives in its own module
    calls = []
    orig = cim.reestimate_bn
    cim.reestimate_bn = lambda net, *a, **k: (calls.append(type(net).__name__), orig(net, *a, **k))[1]
    try:
        sc = Scenario(make_synthetic(n_classes=4, n_train=20, n_test=8, size=16), base=2, increment=2)
        run(get_method('foster', None, epochs=2, compress_epochs=1, batch_size=16), sc, device='cpu', seed=0, log=lambda s: None, progress=False)
    finally: cim.reestimate_bn = orig
    assert calls == ['FosterTeacher'], calls

def test_off_switch_keeps_training_statistics():
    "bn_refresh=False leaves the running statistics training left (the papers' protocol)."
    sc = Scenario(make_synthetic(n_classes=4, n_train=20, n_test=8, size=16), base=2, increment=2)
    m = get_method('icarl', None, epochs=2, batch_size=16, bn_refresh=False)
    run(m, sc, device='cpu', seed=0, log=lambda s: None, progress=False, phases=1)
    assert {int(b.num_batches_tracked) for b in _bns(m.model)} == {2 * (40 // 16)}   # 2 epochs of 2 full batches (the last, short one is dropped)
