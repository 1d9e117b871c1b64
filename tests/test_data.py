"Every data set name loads through the real loaders (official-format files written here), and bad input is refused clearly."
import pickle
import numpy as np, pytest, torch
from PIL import Image
from cil_nb.core import CILError
from cil_nb.data import *

def test_shipped_sets():
    d = load_dataset('digits')
    assert (d.n_classes, d.channels, d.size, d.flip) == (10, 1, (8, 8), False)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64 and int(d.train_x.max()) == 255
    m = load_dataset('mnist5k', size=32)
    assert m.size == (32, 32) and torch.bincount(m.train_y).tolist() == [400] * 10 and torch.bincount(m.test_y).tolist() == [100] * 10
    s = load_dataset('synthetic')
    assert s.split_names == ['train', 'test', 'val'] and s.channels == 3

def test_unknown_name_lists_valid_ones():
    with pytest.raises(CILError, match='valid names are digits, mnist5k, synthetic, cifar10, cifar100, medmnist:<flag>, folder:<path>'):
        load_dataset('imagenet')
    with pytest.raises(CILError, match='size must be'): load_dataset('digits', size=0)

def _write_medmnist(root, flag, size=28, n=(12, 6, 6)):
    from medmnist import INFO
    info, rng = INFO[flag], np.random.RandomState(0)
    shape = (size, size) if info['n_channels'] == 1 else (size, size, 3)
    k = len(info['label'])
    arrs = {}
    for s, m in zip(('train', 'val', 'test'), n):
        arrs[f'{s}_images'] = rng.randint(0, 256, (m, *shape), dtype=np.uint8)
        arrs[f'{s}_labels'] = (np.arange(m) % k).reshape(-1, 1)
    np.savez(root / (f'{flag}.npz' if size == 28 else f'{flag}_{size}.npz'), **arrs)
    return info

@pytest.mark.parametrize('flag', medmnist_flags())
def test_every_medmnist_flag(tmp_path, flag):
    info = _write_medmnist(tmp_path, flag)
    d = load_dataset(f'medmnist:{flag}', root=tmp_path)
    assert d.n_classes == len(info['label']) and d.channels == info['n_channels'] and d.size == (28, 28)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (12, 6, 6)
    assert d.classes[0] == info['label']['0'] and d.flip == (not flag.startswith('organ'))
    assert load_dataset(f'medmnist:{flag}', root=tmp_path, size=32).size == (32, 32)   # 28 px file resized

def test_medmnist_native_sizes_and_errors(tmp_path):
    _write_medmnist(tmp_path, 'bloodmnist', size=64)
    assert load_dataset('medmnist:bloodmnist', root=tmp_path, size=64).size == (64, 64)
    with pytest.raises(CILError, match=r'bloodmnist\.npz not found: pass download=True .*zenodo'):
        load_dataset('medmnist:bloodmnist', root=tmp_path)
    for bad in ('chestmnist', 'retinamnist', 'pneumoniamnist', 'organmnist3d', 'nope'):
        with pytest.raises(CILError, match='the 2D multi-class ones are medmnist:bloodmnist'):
            load_dataset(f'medmnist:{bad}', root=tmp_path)

def _write_cifar(root, name, n=10):
    rng = np.random.RandomState(0)
    batch = lambda m, key, k: {'data': rng.randint(0, 256, (m, 3072), dtype=np.uint8), key: list(np.arange(m) % k)}
    if name == 'cifar10':
        d = root / 'cifar-10-batches-py'; d.mkdir(parents=True)
        for i in range(1, 6): pickle.dump(batch(n, 'labels', 10), open(d / f'data_batch_{i}', 'wb'))
        pickle.dump(batch(n, 'labels', 10), open(d / 'test_batch', 'wb'))
        pickle.dump({'label_names': [f'name{i}' for i in range(10)]}, open(d / 'batches.meta', 'wb'))
    else:
        d = root / 'cifar-100-python'; d.mkdir(parents=True)
        for s in ('train', 'test'):
            b = batch(n * 5 if s == 'train' else n, 'fine_labels', 100); b['coarse_labels'] = [0] * len(b['fine_labels'])
            pickle.dump(b, open(d / s, 'wb'))
        pickle.dump({'fine_label_names': [f'fine{i}' for i in range(100)], 'coarse_label_names': ['c']}, open(d / 'meta', 'wb'))

@pytest.mark.parametrize('name,k', [('cifar10', 10), ('cifar100', 100)])
def test_cifar_through_torchvision(tmp_path, monkeypatch, name, k):
    import torchvision.datasets.cifar as tvc
    with pytest.raises(CILError, match='not found: pass download=True .*toronto'): load_dataset(name, root=tmp_path)
    _write_cifar(tmp_path, name)
    # our small files cannot have the official md5 sums: skip only torchvision's checksum test, nothing else
    monkeypatch.setattr(tvc, 'check_integrity', lambda path, md5=None: __import__('os').path.isfile(path))
    d = load_dataset(name, root=tmp_path)
    assert (d.n_classes, d.channels, d.size, len(d.train_y), len(d.test_y)) == (k, 3, (32, 32), 50, 10)
    raw = pickle.load(open(tmp_path / ('cifar-10-batches-py/data_batch_1' if name == 'cifar10' else 'cifar-100-python/train'), 'rb'), encoding='latin1')
    assert torch.equal(d.train_x[0], torch.as_tensor(raw['data'][0]).view(3, 32, 32))  # channel-major layout kept

def _png(path, size, mode='L', val=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size) if mode == 'L' else (size, size, 3), val, dtype=np.uint8), mode).save(path)

def test_folder_layouts(tmp_path):
    for c in ('ant', 'bee'):
        for i in range(5): _png(tmp_path / 'one' / c / f'{i}.png', 10, 'L', 40 * i)
        for s, m in (('train', 4), ('test', 2), ('val', 2)):
            for i in range(m): _png(tmp_path / 'split' / s / c / f'{i}.png', 12, 'RGB', 30 * i)
    d = load_dataset(f'folder:{tmp_path / "one"}')
    assert (d.classes, d.channels, d.size, len(d.train_y), len(d.test_y)) == (['ant', 'bee'], 1, (10, 10), 8, 2)
    d = load_dataset(f'folder:{tmp_path / "split"}', size=16)
    assert (d.channels, d.size, len(d.train_y), len(d.test_y), len(d.val_y)) == (3, (16, 16), 8, 4, 4)
    _png(tmp_path / 'one' / 'ant' / 'big.png', 14)
    with pytest.raises(CILError, match='differ in size'): load_dataset(f'folder:{tmp_path / "one"}')
    with pytest.raises(CILError, match='does not exist'): load_dataset(f'folder:{tmp_path / "missing"}')
    (tmp_path / 'empty' / 'c').mkdir(parents=True)
    with pytest.raises(CILError, match='no images found'): load_dataset(f'folder:{tmp_path / "empty"}')

def test_from_arrays():
    x = np.random.RandomState(0).rand(40, 3, 8, 8).astype(np.float32)
    d = from_arrays(x, np.repeat([10, 20], 20))
    assert d.classes == ['10', '20'] and d.train_y.unique().tolist() == [0, 1] and (len(d.train_y), len(d.test_y)) == (32, 8)
    d = from_arrays(x[:30], [0, 1] * 15, test_x=x[30:], test_y=[0, 1] * 5, classes=['a', 'b'])
    assert len(d.test_y) == 10 and d.classes == ['a', 'b']
    with pytest.raises(CILError, match='40 images but 3 labels'): from_arrays(x, [0, 1, 2])
    with pytest.raises(CILError, match='too few to split'): from_arrays(x[:3], [0, 1, 2])
    with pytest.raises(CILError, match=r'must lie in \[0, 1\] or \[0, 255\]'): from_arrays(np.full((20, 8, 8), 300.), [0, 1] * 10)

def test_class_order_seed_1993():
    assert class_order(100)[:10] == [68, 56, 78, 8, 23, 84, 90, 65, 74, 76]
    assert class_order(4, None) == [0, 1, 2, 3]

@pytest.fixture(scope='module')
def syn(): return make_synthetic(n_classes=10, n_train=6, n_test=3, n_val=2, size=8)

def test_scenario_phases(syn):
    sc = Scenario(syn, base=4, increment=[3, 3])
    seen = set()
    for p in sc:
        assert sc.train_y[p.train_idx].unique().tolist() == list(p.labels)
        assert set(syn.train_y[p.train_idx].tolist()) == set(p.classes)
        seen |= set(p.classes)
        assert set(syn.test_y[p.test_idx].tolist()) == seen and set(syn.val_y[p.val_idx].tolist()) == seen
    assert seen == set(range(10)) and sc.phase_sizes == [4, 3, 3]
    assert all(sc.order[sc.train_y[i]] == syn.train_y[i] for i in range(len(syn.train_y)))   # remap is the order's inverse
    card = sc.card()
    assert 'synthetic' in card and 'seed 1993' in card and '3 x 8 x 8' in card and '[4, 3, 3]' in card
    assert Scenario(syn, 0, 5, seed=None).order == list(range(10))

@pytest.mark.parametrize('kw,msg', [
    (dict(base=4, increment=4), 'cannot cover the 10 classes'),
    (dict(base=4, increment=0), 'increment must be > 0'),
    (dict(base=4, increment=-2), 'increment must be > 0'),
    (dict(base=4, increment=[3, -1, 4]), 'every increment must be > 0'),
    (dict(base=4, increment=[3, 4]), 'add up to 11 classes'),
    (dict(base=12, increment=2), 'cannot cover'),
    (dict(base=-1, increment=1), 'base must be'),
    (dict(base=2, increment=2, order=[0, 1, 2, 10]), 'does not have'),
    (dict(base=2, increment=2, order=[0, 1, 2, -1]), 'does not have'),
    (dict(base=2, increment=2, order=[0, 1, 2, 2]), 'repeats classes [2]'),
])
def test_scenario_errors(syn, kw, msg):
    with pytest.raises(CILError) as e: Scenario(syn, **kw)
    assert msg in str(e.value)
    with pytest.raises(CILError, match='phase 7 does not exist'): Scenario(syn, 2, 2)[7]

def test_batches_seeded_and_augmented(syn):
    sc = Scenario(syn, 2, 2)
    aug = Augment(*syn.mean_std(), pad=2, flip=True)
    a = [x for x, _ in Batches(syn.train_x, sc.train_y, sc[0].train_idx, 5, aug=aug, seed=3)]
    b = [x for x, _ in Batches(syn.train_x, sc.train_y, sc[0].train_idx, 5, aug=aug, seed=3)]
    c = [x for x, _ in Batches(syn.train_x, sc.train_y, sc[0].train_idx, 5, aug=aug, seed=4)]
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and not all(torch.equal(u, v) for u, v in zip(a, c))
    ys = torch.cat([y for _, y in Batches(syn.train_x, sc.train_y, sc[0].train_idx, 5, aug=aug)])
    assert sorted(ys.tolist()) == sorted(sc.train_y[sc[0].train_idx].tolist())
    assert len(Batches(syn.train_x, sc.train_y, sc[0].train_idx, 5, drop_last=True)) == 2
    bt = Batches(syn.train_x, sc.train_y, sc[0].train_idx, 5, aug=aug, seed=1); st = bt.state()
    first = [x for x, _ in bt]; bt.set_state(st)
    assert all(torch.equal(u, v) for u, v in zip(first, [x for x, _ in bt]))   # the generator state restores an epoch exactly
