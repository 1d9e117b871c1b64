"`--preset paper` gives every method its paper's protocol: the memory keys of `paper_protocol` agree with the paper preset's config, and `prepare` (what `cil_nb_run` calls) builds each paper scenario with that memory. Configs only: nothing trains."
import pytest
import cil_nb.cli as cli
from cil_nb.cli import _method_config, _protocol, prepare, load_methods
from cil_nb.core import CILError
from cil_nb.data import make_synthetic
from cil_nb.memory import Budget

METHODS = load_methods()

# the protocol of each method's paper (or released code): base classes, classes a phase, memory in total, memory a class
PAPER = {
    'icarl':            (10, 10, 2000, None),   # iCaRL: B0 in 10 phases of 10, 2,000 exemplars in total
    'lucir':            (50, 10, None, 20),     # LUCIR family: B50 + 5 x 10, 20 a class
    'mnemonics':        (50, 10, None, 20),
    'aanets':           (50, 10, None, 20),
    'replay':           (50, 10, None, 20),
    'foster':           (50, 10, None, 20),     # FOSTER's released CIFAR B50 configs: memory_per_class 20, fixed_memory
    'cim':              (10, 10, 2000, None),   # CIM: learning from scratch, 2,000 in total (fixed_memory false)
    'genifer':          (50, 10, None, None),   # data-free
    'class_impression': (2, 2, None, None),     # BloodMNIST 2 + 2 + 2 + 2, data-free
    'finetune':         (50, 10, None, None),
    'joint':            (50, 10, None, None),
}

def _paper(name): return _method_config(name, 'paper', None, None, None, None)
def _budget(m): return Budget(m.cfg.memory, None if m.cfg.memory is not None else m.cfg.per_class)   # as `Method.setup` builds it

def test_every_method_has_a_paper_protocol_here():
    assert sorted(METHODS) == sorted(PAPER), 'a method was added or removed: give its paper protocol in PAPER'

@pytest.mark.parametrize('name', sorted(PAPER))
def test_paper_protocol_memory_matches_the_paper_preset(name):
    "The memory keys of `paper_protocol` (which `_protocol` does not read) say what the paper preset's config holds."
    m = _paper(name); p = m.cfg.paper_protocol
    assert set(p) <= {'base', 'increment', 'memory', 'per_class'}, p
    assert (p.get('memory'), p.get('per_class')) == (m.cfg.memory, m.cfg.per_class), (name, p, m.cfg.memory, m.cfg.per_class)

@pytest.mark.parametrize('name', sorted(PAPER))
def test_preset_paper_gives_the_papers_protocol(name):
    base, inc, memory, per_class = PAPER[name]
    m = _paper(name)
    assert _protocol([m], 'paper', None, None) == (base, inc)
    b = _budget(m)
    if m.uses_memory: assert (b.total, b.per_class) == (memory, per_class), (name, b)
    else: assert (memory, per_class, m.cfg.memory, m.cfg.per_class) == (None,) * 4, name   # a memory-free method: none either side

@pytest.fixture
def hundred_classes(monkeypatch):
    "`prepare` on a tiny 100-class data set, so the paper scenarios (B50, 10 x 10) fit without CIFAR-100."
    monkeypatch.setattr(cli, 'load_dataset', lambda *a, **k: make_synthetic(n_classes=100, n_train=2, n_test=1, n_val=1, size=8))

@pytest.mark.parametrize('name', sorted(PAPER))
def test_prepare_builds_the_paper_scenario(name, hundred_classes, tmp_path):
    base, inc, memory, per_class = PAPER[name]
    (m,), sc, _, _ = prepare(name, 'cifar100', preset='paper', device='cpu', out=tmp_path / 'o')
    assert sc.phase_sizes == [base] + [inc] * ((100 - base) // inc)
    if m.uses_memory:
        assert (m.cfg.memory, m.cfg.per_class) == (memory, per_class)
        assert _budget(m).per_class_after(base) == (per_class if per_class is not None else memory // base)

def test_the_command_line_memory_overrides_the_papers(hundred_classes, tmp_path):
    (f,), *_ = prepare('foster', 'cifar100', preset='paper', memory=2000, device='cpu', out=tmp_path / 'o')
    (c,), *_ = prepare('cim', 'cifar100', preset='paper', per_class=20, device='cpu', out=tmp_path / 'o')
    assert (f.cfg.memory, f.cfg.per_class, c.cfg.memory, c.cfg.per_class) == (2000, None, None, 20)
    with pytest.raises(CILError, match='different paper protocols'):
        prepare('icarl,lucir', 'cifar100', preset='paper', device='cpu', out=tmp_path / 'o')

def test_the_small_presets_keep_20_a_class():
    "The small preset of every exemplar method stores 20 a class, whatever its paper preset does."
    for name in PAPER:
        m = _method_config(name, 'small', None, None, None, None)
        if m.uses_memory: assert (m.cfg.memory, m.cfg.per_class) == (None, 20), name

def test_paper_protocols_train_on_the_whole_official_training_set(monkeypatch, tmp_path):
    "`--preset paper` loads CIFAR (and Fashion-MNIST) with no val carved out of train; the small preset and tuning runs keep it."
    seen = []
    def fake(*a, **k):
        seen.append(k.get('whole_train')); return make_synthetic(n_classes=100, n_train=2, n_test=1, n_val=1, size=8)
    monkeypatch.setattr(cli, 'load_dataset', fake)
    prepare('lucir', 'cifar100', preset='paper', device='cpu', out=tmp_path / 'a')
    prepare('lucir', 'cifar100', preset='small', device='cpu', out=tmp_path / 'b')
    prepare('lucir', 'cifar100', preset='paper', eval='val', device='cpu', out=tmp_path / 'c')
    assert seen == [True, False, False]
