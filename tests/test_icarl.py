"iCaRL's options: the released codes' host (cosine head, imprinted new rows, frozen old rows) and the paper's BCE loss; defaults unchanged."
import pytest, torch
import torch.nn.functional as F
from cil_nb.core import CILError
from cil_nb.data import Scenario, make_synthetic
from cil_nb.learner import run, get_method
from cil_nb.memory import extract_features
from cil_nb.models import CosineHead, LinearHead
from cil_nb.cli import prepare
from cil_nb.methods.baselines import ICaRL, ICaRLConfig, bce_targets, bce_loss, kd_loss

SC = Scenario(make_synthetic(n_classes=6, n_train=16, n_test=8, size=16), base=2, increment=2)
KW = dict(epochs=2, batch_size=8, per_class=4)

class Keep(ICaRL):
    "Keeps the head's rows and the new classes' features as they are when phase 1 starts (after imprinting)."
    def before_phase(self, p):
        super().before_phase(p)
        if p.t == 1:
            self.rows = [w.detach().clone() for w in self.model.head.weights]
            self.feats = extract_features(self.model.features, self.train_x[p.train_idx], self.prep)
            self.labels = self.train_y[p.train_idx]

def _run(cfg, phases=2):
    m = Keep(cfg); res = run(m, SC, device='cpu', seed=0, log=lambda s: None, phases=phases)
    return m, res

def test_defaults_are_unchanged():
    c = ICaRLConfig()
    assert (c.head, c.distill, c.imprint, c.freeze_old, c.T, c.beta) == ('linear', 'kd', False, False, 2.0, 0.25)
    m, res = _run(ICaRLConfig.small(**KW))
    assert isinstance(m.model.head, LinearHead) and set(res.history[1][0]) == {'ce', 'kd', 'loss'}
    assert not torch.equal(m.model.head.weights[0], m.rows[0])              # the old rows train
    assert all(w.requires_grad for w in m.model.head.weights)

def test_released_host_imprints_new_rows_and_freezes_old_ones():
    cfg = ICaRLConfig.released(**KW)
    assert (cfg.head, cfg.imprint, cfg.freeze_old, cfg.distill) == ('cosine', True, True, 'kd')
    m, res = _run(cfg)
    head = m.model.head
    assert isinstance(head, CosineHead) and set(res.history[1][0]) == {'ce', 'kd', 'loss'}
    old, new = m.rows                                                       # at the start of phase 1
    fn = F.normalize(m.feats, dim=1)
    for i, c in enumerate(SC[1].labels):                                    # imprinted: normalised class mean x old rows' norm
        mean = F.normalize(fn[m.labels == c].mean(0), dim=0)
        torch.testing.assert_close(new[i], mean * old.norm(dim=1).mean())
    assert torch.equal(head.weights[0], old) and not head.weights[0].requires_grad   # old rows unchanged after the phase
    assert not torch.equal(head.weights[1], new) and head.weights[1].requires_grad   # new rows trained

def test_imprint_and_freeze_work_alone_on_the_linear_head():
    m, _ = _run(ICaRLConfig.small(**KW, imprint=True))
    assert torch.count_nonzero(m.model.head.biases[1].detach()) > 0 and not torch.equal(m.model.head.weights[0], m.rows[0])
    fn = F.normalize(m.feats, dim=1); c = SC[1].labels[0]
    torch.testing.assert_close(m.rows[1][0], F.normalize(fn[m.labels == c].mean(0), dim=0) * m.rows[0].norm(dim=1).mean())
    m, _ = _run(ICaRLConfig.small(**KW, freeze_old=True), phases=3)         # frozen blocks stay frozen in later phases
    assert [w.requires_grad for w in m.model.head.weights] == [False, False, True]
    assert torch.equal(m.model.head.weights[0], m.rows[0]) and not m.model.head.biases[0].requires_grad

def test_bce_distillation_targets_are_the_old_models_sigmoids():
    m, res = _run(ICaRLConfig.small(**KW, distill='bce'))
    assert set(res.history[0][0]) == {'bce', 'loss'} and set(res.history[1][0]) == {'bce', 'bce_old', 'loss'}
    idx = torch.nonzero(m.train_y < 4).flatten()[::5]                      # images of the old and the new classes
    x, y = m.prep(m.train_x[idx]), m.train_y[idx]
    assert set(y.tolist()) == {0, 1, 2, 3}
    m.model.eval()
    with torch.no_grad():
        total, parts = m.loss(x, y)
        logits, ref = m.model(x), m.old_model(x)
    n_old = ref.shape[1]
    t = F.one_hot(y, logits.shape[1]).float(); t[:, :n_old] = torch.sigmoid(ref)
    torch.testing.assert_close(bce_targets(y, logits.shape[1], ref), t)
    torch.testing.assert_close(total, F.binary_cross_entropy_with_logits(logits, t, reduction='sum') / len(y))
    onehot = F.binary_cross_entropy_with_logits(logits, F.one_hot(y, logits.shape[1]).float(), reduction='sum') / len(y)
    assert not torch.allclose(total, onehot)                                # the old columns' targets are not the labels
    new, old = bce_loss(logits, y, ref)
    torch.testing.assert_close((parts['bce'], parts['bce_old']), (new, old))
    # the default: cross-entropy plus beta x KD on the old columns
    m.cfg = m.cfg.replace(distill='kd')
    with torch.no_grad(): total, parts = m.loss(x, y)
    torch.testing.assert_close(total, F.cross_entropy(logits, y) + 0.25 * kd_loss(logits[:, :n_old], ref, 2.0))

def test_bad_settings_and_the_command_line():
    with pytest.raises(CILError, match="'kd'"): ICaRL(distill='sigmoid')
    with pytest.raises(CILError, match='distill=sigmoid is not allowed'):
        prepare(method='icarl:distill=sigmoid', dataset='synthetic', out='/tmp')
    m = prepare(method='icarl:head=cosine:imprint=true:freeze_old=true:distill=bce', dataset='synthetic', out='/tmp')[0][0]
    assert (m.cfg.head, m.cfg.imprint, m.cfg.freeze_old, m.cfg.distill) == ('cosine', True, True, 'bce')
    mn = get_method('mnemonics', host='icarl')                              # a hosted method takes the iCaRL host's settings
    assert (mn.cfg.distill, mn.head_name, mn.host.imprint, mn.host.freeze_old) == ('kd', 'linear', False, False)
    mn = get_method('mnemonics', host='icarl_released', distill='bce')      # the released codes' host, by name
    assert (mn.cfg.distill, mn.head_name, mn.host.imprint, mn.host.freeze_old) == ('bce', 'cosine', True, True)
