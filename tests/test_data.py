"Every data set name loads through the real loaders (official-format files written here), and bad input is refused clearly."
import gzip, pickle
import numpy as np, pytest, torch
from PIL import Image
import cil_nb.data as cd
from cil_nb.core import CILError
from cil_nb.data import *
from cil_nb.store import *
from cil_nb.batches import *
from cil_nb.folders import *

def test_shipped_sets():
    d = load_dataset('digits')   # 8x8 up-sampled to 16x16 by default, so ci_net (>= 13 px) fits
    assert (d.n_classes, d.channels, d.size, d.flip) == (10, 1, (16, 16), False) and 'up-sampled to 16x16' in d.note
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (1295, 143, 359) and d.val_x.shape[-1] == 16
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64 and int(d.train_x.max()) == 255
    assert load_dataset('digits', size=8).size == (8, 8) and load_digits_data().size == (8, 8)
    m = load_dataset('mnist5k', size=32)
    assert m.size == (32, 32) and m.val_x.shape[-1] == 32
    assert [torch.bincount(getattr(m, f'{s}_y')).tolist() for s in ('train', 'val', 'test')] == [[360] * 10, [40] * 10, [100] * 10]
    s = load_dataset('synthetic')
    assert s.split_names == ['train', 'test', 'val'] and s.channels == 3

def test_unknown_name_lists_valid_ones():
    with pytest.raises(CILError, match='valid names are digits, mnist5k, fashion-mnist, synthetic, cifar10, cifar100, medmnist:<flag>, folder:<path>'):
        load_dataset('imagenet')
    with pytest.raises(CILError, match='size must be'): load_dataset('digits', size=0)
    with pytest.raises(CILError, match="evaluation split must be 'test' or 'val'"): load_dataset('digits', eval_split='train')

def test_val_split_is_held_out_and_evaluable():
    x = torch.arange(60, dtype=torch.uint8).view(60, 1, 1, 1).expand(60, 1, 4, 4).contiguous()   # image i is all i
    d = carve_val(CILData('toy', x, torch.arange(60) % 3, x[:3], torch.arange(3), ['a', 'b', 'c']))
    assert (len(d.train_y), len(d.val_y)) == (54, 6) and torch.bincount(d.val_y).tolist() == [2, 2, 2]
    tr, va = set(d.train_x[:, 0, 0, 0].tolist()), set(d.val_x[:, 0, 0, 0].tolist())
    assert not tr & va and tr | va == set(range(60))
    assert carve_val(d) is d and torch.equal(carve_val(CILData('toy', x, torch.arange(60) % 3, x[:3], torch.arange(3), ['a', 'b', 'c'])).val_x, d.val_x)
    v = d.with_eval('val')
    assert (v.name, v.evaluates, v.val_x, v.note.endswith('evaluated on the val split (test images not used)')) == ('toy[val]', 'val', None, True)
    assert torch.equal(v.test_x, d.val_x) and torch.equal(v.train_x, d.train_x) and d.with_eval('test') is d
    card = Scenario(v, 1, 1).card()
    assert 'train 54, val 6 (as the test split)' in card and 'evaluation   val split (6 images held out of train)' in card
    assert "tune on the val split (6 images, with_eval('val'))" in Scenario(d, 1, 1).card()
    with pytest.raises(CILError, match='load it again'): v.with_eval('test')
    with pytest.raises(CILError, match='no validation split'): CILData('raw', x, torch.arange(60) % 3, x[:3], torch.arange(3), list('abc')).with_eval('val')
    with pytest.raises(CILError, match=r'class\(es\) \[1\] have a single training image'):
        carve_val(CILData('one', x[:3], torch.tensor([0, 0, 1]), x[:2], torch.arange(2), ['a', 'b']))
    with pytest.raises(CILError, match='val_frac must lie strictly between 0 and 1'): carve_val(CILData('raw', x, torch.arange(60) % 3, x[:3], torch.arange(3), list('abc')), 1.0)

def test_eval_on_val_through_load_dataset():
    d = load_dataset('mnist5k', eval_split='val')
    assert (d.name, len(d.train_y), len(d.test_y), d.val_x) == ('mnist5k[val]', 3600, 400, None)
    assert torch.equal(d.train_x, load_dataset('mnist5k').train_x)      # the same training images in both modes
    dg = load_dataset('digits', eval_split='val')
    assert dg.size == (16, 16) and len(dg.test_y) == 143

FILES = {'train_x': 'train-images-idx3-ubyte', 'train_y': 'train-labels-idx1-ubyte', 'test_x': 't10k-images-idx3-ubyte', 'test_y': 't10k-labels-idx1-ubyte'}

def _write_fashion(folder, n_train=40, n_test=20, gz=True):
    rng = np.random.RandomState(0); folder.mkdir(parents=True, exist_ok=True); out = {}
    for s, n in (('train', n_train), ('test', n_test)):
        out[s] = rng.randint(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)
        for k, a in zip('xy', out[s]):   # the idx format written by hand here, independent of write_idx
            raw = b'\x00\x00\x08' + bytes([a.ndim]) + b''.join(int(v).to_bytes(4, 'big') for v in a.shape) + a.tobytes()
            p = folder / (FILES[f'{s}_{k}'] + ('.gz' if gz else ''))
            p.write_bytes(gzip.compress(raw) if gz else raw)
    return out

@pytest.fixture
def no_system_copy(tmp_path, monkeypatch):
    "As on a machine without Debian's package, and with an empty default root."
    monkeypatch.setattr(cd, 'FASHION_SYSTEM_DIR', tmp_path / 'no-system-copy')
    monkeypatch.setenv('CIL_NB_DATA', str(tmp_path / 'default-root'))
    return tmp_path

def test_fashion_mnist_as_distributed(no_system_copy):
    w = _write_fashion(no_system_copy / 'fm')
    d = load_dataset('fashion-mnist', root=no_system_copy / 'fm')
    assert d.classes == ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
    assert (d.name, d.flip, d.channels, d.size, len(d.train_y), len(d.val_y), len(d.test_y)) == ('fashion-mnist', True, 1, (28, 28), 30, 10, 20)
    assert np.array_equal(d.test_x[:, 0].numpy(), w['test'][0]) and np.array_equal(d.test_y.numpy(), w['test'][1])
    both = torch.cat([d.train_x, d.val_x])[:, 0].numpy()
    assert sorted(map(bytes, both)) == sorted(map(bytes, w['train'][0]))   # train + val = the official training set
    assert 'official 40/20 train/test split' in d.note and str(no_system_copy / 'fm') in d.note
    r = load_dataset('fashion-mnist', root=no_system_copy / 'fm', size=16, eval_split='val')
    assert r.test_x.shape == (10, 1, 16, 16) and r.name == 'fashion-mnist[val]'

def test_fashion_mnist_torchvision_layout_and_default_root(no_system_copy):
    _write_fashion(no_system_copy / 'tv' / 'FashionMNIST' / 'raw', 30, 10, gz=False)
    assert len(load_dataset('fashion-mnist', root=no_system_copy / 'tv').train_y) == 20
    _write_fashion(no_system_copy / 'default-root' / 'FashionMNIST' / 'raw', 50, 10)
    assert len(load_dataset('fashion-mnist').test_y) == 10                    # $CIL_NB_DATA when no root is given

def test_fashion_mnist_system_copy(no_system_copy, monkeypatch):
    _write_fashion(no_system_copy / 'usr-share', 20, 10)
    monkeypatch.setattr(cd, 'FASHION_SYSTEM_DIR', no_system_copy / 'usr-share')
    d = load_dataset('fashion-mnist')                       # no root given: the default root (empty), then Debian's copy
    assert len(d.test_y) == 10 and 'usr-share' in d.note
    (no_system_copy / 'empty').mkdir()                       # a root given is the only place looked in
    with pytest.raises(CILError, match='Fashion-MNIST files not found in .*empty'): load_dataset('fashion-mnist', root=no_system_copy / 'empty')

def test_fashion_mnist_errors(no_system_copy):
    root = no_system_copy / 'fm'; root.mkdir()
    with pytest.raises(CILError) as e: load_dataset('fashion-mnist', root=root)
    msg = str(e.value)
    assert 'apt-get install dataset-fashion-mnist' in msg and '--download' in msg and '\n' not in msg
    _write_fashion(root)
    (root / 't10k-labels-idx1-ubyte.gz').write_bytes(gzip.compress(b'\x00\x00\x08\x03' + bytes(12)))
    with pytest.raises(CILError, match='magic number is 0x00000803, expected 0x00000801'): load_dataset('fashion-mnist', root=root)
    (root / 't10k-labels-idx1-ubyte.gz').write_bytes(b'\x1f\x8b not really gzip')
    with pytest.raises(CILError, match='cannot read .*t10k-labels-idx1-ubyte.gz'): load_dataset('fashion-mnist', root=root)
    _write_fashion(root)
    good = gzip.decompress((root / 'train-images-idx3-ubyte.gz').read_bytes())
    (root / 'train-images-idx3-ubyte.gz').write_bytes(gzip.compress(good[:-100]))
    with pytest.raises(CILError, match='damaged: its header promises 40 x 28 x 28 = 31,360 bytes, the file holds 31,260'):
        load_dataset('fashion-mnist', root=root)
    (root / 'train-images-idx3-ubyte.gz').unlink()
    with pytest.raises(CILError, match=r'only some of the Fashion-MNIST files: train-images-idx3-ubyte\[\.gz\] missing'):
        load_dataset('fashion-mnist', root=root)

def test_fashion_mnist_download(no_system_copy, monkeypatch):
    import torchvision
    calls = []
    class FakeFashionMNIST:   # torchvision's class, minus the network: it leaves the files where torchvision would
        def __init__(self, root, train=True, download=False):
            calls.append((root, download)); _write_fashion(cd.Path(root) / 'FashionMNIST' / 'raw', 20, 10, gz=False)
    monkeypatch.setattr(torchvision.datasets, 'FashionMNIST', FakeFashionMNIST)
    d = load_dataset('fashion-mnist', download=True)
    assert calls == [(str(no_system_copy / 'default-root'), True)] and len(d.test_y) == 10
    class Offline:
        def __init__(self, *a, **k): raise OSError('Name or service not known')
    monkeypatch.setattr(torchvision.datasets, 'FashionMNIST', Offline)
    with pytest.raises(CILError, match='downloading Fashion-MNIST with torchvision into .* failed .*apt-get install dataset-fashion-mnist'):
        load_dataset('fashion-mnist', root=no_system_copy / 'elsewhere', download=True)

def test_idx_round_trip(tmp_path):
    a = np.random.RandomState(1).randint(0, 256, (4, 5, 6), dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / 'a.gz', a), 3), a) and np.array_equal(read_idx(write_idx(tmp_path / 'a', a)), a)
    with pytest.raises(CILError, match='expected 0x00000801'): read_idx(tmp_path / 'a', 1)
    with pytest.raises(CILError, match='values 0..255'): write_idx(tmp_path / 'b', np.array([300]))

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
            b = batch(n * 20 if s == 'train' else n, 'fine_labels', 100)   # two training images a class; b['coarse_labels'] = [0] * len(b['fine_labels'])
            pickle.dump(b, open(d / s, 'wb'))
        pickle.dump({'fine_label_names': [f'fine{i}' for i in range(100)], 'coarse_label_names': ['c']}, open(d / 'meta', 'wb'))

@pytest.mark.parametrize('name,k,n_train,n_val', [('cifar10', 10, 40, 10), ('cifar100', 100, 100, 100)])
def test_cifar_through_torchvision(tmp_path, monkeypatch, name, k, n_train, n_val):
    import torchvision.datasets.cifar as tvc
    with pytest.raises(CILError, match='not found: pass download=True .*toronto'): load_dataset(name, root=tmp_path)
    _write_cifar(tmp_path, name)
    # our small files cannot have the official md5 sums: skip only torchvision's checksum test, nothing else
    monkeypatch.setattr(tvc, 'check_integrity', lambda path, md5=None: __import__('os').path.isfile(path))
    d = load_dataset(name, root=tmp_path)
    assert (d.n_classes, d.channels, d.size, len(d.train_y), len(d.val_y), len(d.test_y)) == (k, 3, (32, 32), n_train, n_val, 10)   # 10% of train (at least one a class) to val
    raw = pickle.load(open(tmp_path / ('cifar-10-batches-py/test_batch' if name == 'cifar10' else 'cifar-100-python/test'), 'rb'), encoding='latin1')
    assert torch.equal(d.test_x[0], torch.as_tensor(raw['data'][0]).view(3, 32, 32))  # channel-major layout kept

def _png(path, size, mode='L', val=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size) if mode == 'L' else (size, size, 3), val, dtype=np.uint8), mode).save(path)

@pytest.mark.parametrize('ram_mb', ['2048', '0'])   # held in memory, or cached once and read from disk (DiskImages)
def test_folder_layouts(tmp_path, monkeypatch, ram_mb):
    monkeypatch.setenv('CIL_NB_CACHE', str(tmp_path / 'cache')); monkeypatch.setenv('CIL_NB_RAM_MB', ram_mb)
    for c in ('ant', 'bee'):
        for i in range(5): _png(tmp_path / 'one' / c / f'{i}.png', 10, 'L', 40 * i)
        for s, m in (('train', 4), ('test', 2), ('val', 2)):
            for i in range(m): _png(tmp_path / 'split' / s / c / f'{i}.png', 12, 'RGB', 30 * i)
    d = load_dataset(f'folder:{tmp_path / "one"}')
    assert (d.classes, d.channels, d.size, len(d.train_y), len(d.val_y), len(d.test_y)) == (['ant', 'bee'], 1, (10, 10), 6, 2, 2)
    d = load_dataset(f'folder:{tmp_path / "split"}', size=16)
    assert (d.channels, d.size, len(d.train_y), len(d.test_y), len(d.val_y)) == (3, (16, 16), 8, 4, 4)   # the val/ folder is the val split
    assert isinstance(d.train_x, DiskImages) == (ram_mb == '0') and sorted(d.val_x[:, 0, 0, 0].tolist()) == [0, 0, 30, 30] and d.test_x[1].shape == (3, 16, 16)
    import shutil; shutil.rmtree(tmp_path / 'split' / 'val')
    d = load_dataset(f'folder:{tmp_path / "split"}')
    assert (len(d.train_y), len(d.val_y), len(d.test_y), d.size) == (6, 2, 4, (12, 12))                 # without it, carved from train
    shutil.move(tmp_path / 'split' / 'test', tmp_path / 'split' / 'val')                               # ImageNet's layout: val/ is the test split
    d = load_dataset(f'folder:{tmp_path / "split"}')
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (6, 2, 4) and 'val/ is the test split' in d.note
    _png(tmp_path / 'one' / 'ant' / 'big.png', 14)
    with pytest.raises(CILError, match='differ in size'): load_dataset(f'folder:{tmp_path / "one"}')
    with pytest.raises(CILError, match='does not exist'): load_dataset(f'folder:{tmp_path / "missing"}')
    (tmp_path / 'empty' / 'c').mkdir(parents=True)
    with pytest.raises(CILError, match='no images found'): load_dataset(f'folder:{tmp_path / "empty"}')
    shutil.rmtree(tmp_path / 'split' / 'val')
    with pytest.raises(CILError, match=r'has train/ but no test/ \(nor val/\)'): load_dataset(f'folder:{tmp_path / "split"}')

def test_from_arrays():
    x = np.random.RandomState(0).rand(40, 3, 8, 8).astype(np.float32)
    d = from_arrays(x, np.repeat([10, 20], 20))
    assert d.classes == ['10', '20'] and d.train_y.unique().tolist() == [0, 1] and (len(d.train_y), len(d.val_y), len(d.test_y)) == (28, 4, 8)
    assert from_arrays(x, np.repeat([10, 20], 20), val_frac=0).val_x is None
    d = from_arrays(x[:30], [0, 1] * 15, test_x=x[30:], test_y=[0, 1] * 5, classes=['a', 'b'])
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (26, 4, 10) and d.classes == ['a', 'b']
    d = from_arrays(x[:20], [0, 1] * 10, test_x=x[20:30], test_y=[0, 1] * 5, val_x=x[30:], val_y=[0, 1] * 5)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (20, 10, 10)                                # a given val split is kept
    with pytest.raises(CILError, match='give both val_x and val_y'): from_arrays(x[:20], [0, 1] * 10, test_x=x[20:], test_y=[0, 1] * 10, val_x=x[:2])
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
