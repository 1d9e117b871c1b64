"""The natural-image regime (issue 17): ResNet-18 with torchvision's ImageNet stem, RandomResizedCrop batched on the
device, and `folder:` sets kept on disk (`DiskImages`), read by batch, that train like the same images in memory."""
import json, os, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pytest, torch
from conftest import console
from cil_nb.core import CILError
from cil_nb.data import *
from cil_nb.store import *
from cil_nb.batches import *
from cil_nb.folders import *
from cil_nb.models import *

ENV = {**os.environ, 'IN_TEST': '1', 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}

@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    "60 generated JPEGs, 4 classes of 15, 72 to 88 px a side: the tests' natural images."
    return make_image_folder(tmp_path_factory.mktemp('natural') / 'gen', n_classes=4, per_class=15, size=80, size_jitter=8)

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('CIL_NB_CACHE', str(tmp_path / 'cache')); return tmp_path / 'cache'

def test_resnet18_imagenet_is_torchvisions():
    import torchvision
    n = sum(q.numel() for k, q in torchvision.models.resnet18().named_parameters() if not k.startswith('fc.'))
    assert count_params(resnet18_imagenet()) == n == 11_176_512
    net = make_backbone('resnet18_imagenet', 1, 'cn').eval()          # any channels and norm, like the others
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad(): f, m, st = net(x), net.fmap(x), net.stages(x)
    assert f.shape == (2, 512) and m.shape == (2, 512, 2, 2) and [s.shape[-1] for s in st] == [16, 16, 8, 4, 2]
    assert count_params(make_model('resnet18_imagenet', head='linear').grow(10)) == n + 5130

def test_natural_augment_draws_a_box_per_image():
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(64, -1, -1, -1)
    aug = Augment([0.5] * 3, [0.25] * 3, mode='natural', flip=False)
    a, b = aug(img, torch.Generator().manual_seed(0)), aug(img, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, aug(img, torch.Generator().manual_seed(1)))
    assert len({tuple(v.flatten()[::97].tolist()) for v in a}) == 64   # 64 copies of one image, 64 different crops
    flip = Augment([0.5] * 3, [0.25] * 3, mode='natural', scale=(1, 1), ratio=(1, 1))(img, torch.Generator().manual_seed(0))
    plain = Augment([0.5] * 3, [0.25] * 3)(img, None, train=False)
    n_flip = sum(torch.allclose(v, plain[0].flip(-1), atol=1e-4) for v in flip)
    assert all(torch.allclose(v, plain[0], atol=1e-4) or torch.allclose(v, plain[0].flip(-1), atol=1e-4) for v in flip) and 16 < n_flip < 48

def test_folder_on_disk_matches_memory(folder, cache, monkeypatch):
    mem = load_folder(folder, size=64)                                # 60 x 3 x 64 x 64 = 0.7 MB: in memory
    assert isinstance(mem.train_x, torch.Tensor) and not cache.exists()   # nothing cached for a set held in memory
    monkeypatch.setenv('CIL_NB_RAM_MB', '0.5')                       # now above the limit: decoded once, kept on disk
    disk = load_folder(folder, size=64)
    assert isinstance(disk.train_x, DiskImages) and 'on disk, read by batch' in disk.note
    for s in ('train', 'val', 'test'):
        assert torch.equal(getattr(disk, f'{s}_x').load(), getattr(mem, f'{s}_x')) and torch.equal(getattr(disk, f'{s}_y'), getattr(mem, f'{s}_y'))
    assert np.allclose(disk.mean_std(), mem.mean_std(), atol=1e-5)
    entry, = cache.iterdir()
    assert np.load(entry / 'images.npy', mmap_mode='r').shape == (60, 3, 64, 64)
    assert json.loads((entry / 'meta.json').read_text())['files'] == 60
    (entry / 'stats.npy').unlink()                                    # a damaged entry is decoded again, not trusted
    again = load_folder(folder, size=64)
    assert torch.equal(again.train_x.load(), mem.train_x) and (entry / 'stats.npy').exists()

def test_reads_keep_no_mapping(folder, cache):
    "The memory bound: reads are plain file reads into the returned array, so no page of the cache file is mapped into the process."
    maps = Path('/proc/self/maps')
    if not maps.exists(): pytest.skip('needs /proc/self/maps (Linux)')
    x = load_folder(folder, size=64, in_ram=False).train_x
    assert sum(len(b) for b in x.split(8)) == len(x) and x[torch.arange(10)].shape == (10, 3, 64, 64)
    assert 'images.npy' not in maps.read_text()

def test_bad_input(folder, cache, monkeypatch, tmp_path):
    monkeypatch.setenv('CIL_NB_RAM_MB', 'lots')
    with pytest.raises(CILError, match=r'\$CIL_NB_RAM_MB must be a number of megabytes'): load_folder(folder, size=64)
    monkeypatch.delenv('CIL_NB_RAM_MB')
    bad = make_image_folder(tmp_path / 'bad', n_classes=2, per_class=4, size=16)
    (bad / 'class01' / 'broken.jpg').write_bytes(b'not an image')
    with pytest.raises(CILError, match='cannot read image .*broken.jpg'): load_folder(bad, in_ram=False)
    with pytest.raises(CILError, match="'pad' \\(pad-and-crop\\) or 'natural'"): Augment([0.5], [0.5], mode='crop')
    with pytest.raises(CILError, match='DiskImages of 44 images: index 99 is out of bounds'): load_folder(folder, size=16, in_ram=False).train_x[torch.tensor([99])]

def _icarl(folder, mean_std=None):
    from cil_nb.learner import run, get_method
    d = load_dataset(f'folder:{folder}', size=32)
    if mean_std is not None: d.mean_std = lambda: mean_std
    m = get_method('icarl', backbone='resnet18_imagenet', epochs=1, batch_size=8, per_class=3, aug='natural', color_jitter=0.4)
    return d, run(m, Scenario(d, 2, 2), device='cpu', seed=0, log=lambda s: None, progress=False)

def test_run_from_disk_matches_memory(folder, cache, monkeypatch):
    "iCaRL on the folder from disk and from memory: the same batches, so (with the same normalisation) the same run, bit for bit."
    dm, rm = _icarl(folder)
    monkeypatch.setenv('CIL_NB_RAM_MB', '0'); monkeypatch.setenv('CIL_NB_LOAD_MB', str(8 * 3 * 32 * 32 / 2**20))   # a batch of 8 is read whole, a phase stays on disk
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); dd, rd = _icarl(folder, dm.mean_std())
    assert isinstance(dd.train_x, DiskImages) and isinstance(dm.train_x, torch.Tensor)
    loaded = [str(x.message) for x in w if 'on DiskImages' in str(x.message)]
    assert all(m.startswith('detach on DiskImages') for m in loaded), loaded   # only the run's data fingerprint (64 sampled images) loads
    assert rm.history == rd.history and all(np.array_equal(rm.metrics.acc(h), rd.metrics.acc(h)) for h in ('cnn', 'nme'))
    assert np.allclose(dd.mean_std(), dm.mean_std(), atol=1e-6)      # its own statistics (float64 sums) differ in float rounding only

def test_cim_on_a_folder_from_disk(cache, tmp_path):
    "cil_nb_run: CIM with resnet18_imagenet and natural augmentation on a folder cached on disk, end to end."
    out, folder = tmp_path / 'o', make_image_folder(tmp_path / 'cim', n_classes=4, per_class=8, size=72, size_jitter=8)
    r = subprocess.run([*console('cil_nb_run', 'cil_nb.cli'), '--method', 'cim', '--dataset', f'folder:{folder}', '--size', '64',
                        '--backbone', 'resnet18_imagenet', '--epochs', '1', '--base', '2', '--increment', '2', '--per_class', '3',
                        '--set', 'aug=natural,compress_epochs=1,cam_interval=1,batch_size=16', '--threads', '1', '--out', str(out)],
                       capture_output=True, text=True, timeout=600, env={**ENV, 'CIL_NB_RAM_MB': '0', 'CIL_NB_CACHE': str(cache)})
    assert r.returncode == 0, r.stderr
    assert 'on disk, read by batch' in r.stdout and 'cim (resnet18_imagenet' in r.stdout
    res = json.loads((out / 'cim' / 'results.json').read_text())
    assert res['config']['aug'] == 'natural' and res['config']['backbone'] == 'resnet18_imagenet' and len(res['phase_seconds']) == 2
    assert res['extras']['mean_box_fraction'][-1] <= 1

def test_imagenet100_command_parses(tmp_path, monkeypatch):
    "The ImageNet-100 protocol command (B50 + 10 x 5, 224 px, 20 exemplars a class) builds on a generated 100-class folder."
    from cil_nb.cli import prepare
    root = make_image_folder(tmp_path / 'in100', n_classes=100, size=8, fmt='png', splits={'train': 2, 'val': 1})
    monkeypatch.setenv('CIL_NB_CACHE', str(tmp_path / 'cache'))
    methods, sc, dev, out = prepare('cim', f'folder:{root}', base=50, increment='5', per_class=20, backbone='resnet18_imagenet',
                                    size=224, preset='paper', settings=['aug=natural,batch_size=256'], out=str(tmp_path / 'o'))
    cfg = methods[0].cfg
    assert sc.phase_sizes == [50] + [5] * 10 and sc.data.size == (224, 224) and sc.order[:3] == [68, 56, 78]
    assert (cfg.backbone, cfg.aug, cfg.per_class, cfg.memory, cfg.autoaugment, cfg.batch_size) == ('resnet18_imagenet', 'natural', 20, None, 'imagenet', 256)
    assert 'val/ is the test split' in sc.data.note and len(sc.data.test_y) == 100
