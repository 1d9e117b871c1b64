"Metrics on small matrices worked out by hand."
import json, math
import numpy as np, pytest, torch
from cil_nb.core import CILError
from cil_nb.metrics import *

# Three phases of one class each (labels 0, 1, 2); ten test images a class.
#   after phase 0: class 0 right 10/10                       -> R[0] = [100, nan, nan], acc 100
#   after phase 1: class 0 right 6/10, class 1 right 9/10    -> R[1] = [ 60,  90, nan], acc 75
#   after phase 2: class 0 right 3/10, class 1 right 5/10, class 2 right 10/10 -> R[2] = [30, 50, 100], acc 60
def _preds(right):
    y, p = [], []
    for c, k in enumerate(right):
        y += [c] * 10; p += [c] * k + [(c + 1) % 3 if c < 2 else 0] * (10 - k)
    return torch.tensor(p), torch.tensor(y)

@pytest.fixture
def m():
    m = CILMetrics([1, 1, 1])
    for t, right in enumerate([[10], [6, 9], [3, 5, 10]]): m.update(t, 'cnn', *_preds(right))
    return m

def test_by_hand(m):
    R = m.R('cnn')
    assert np.allclose(R[np.tril_indices(3)], [100, 60, 90, 30, 50, 100]) and np.isnan(R[0, 1])
    assert np.allclose(m.acc('cnn'), [100, 75, 60])
    s = m.summary('cnn')
    assert math.isclose(s['avg_inc_acc'], (100 + 75 + 60) / 3) and math.isclose(s['avg_inc_acc_excl_first'], (75 + 60) / 2)
    assert math.isclose(s['last_acc'], 60)
    # forgetting: class 0 best before the end 100 -> 30 = 70; class 1 best 90 -> 50 = 40; mean 55
    assert math.isclose(s['avg_forgetting'], 55) and math.isclose(average_forgetting(R), 55)
    # BWT: (30 - 100 + 50 - 90) / 2 = -55
    assert math.isclose(s['bwt'], -55) and math.isclose(backward_transfer(R), -55)
    assert np.allclose(s['new_acc'], [100, 90, 100]) and np.isnan(s['old_acc'][0]) and np.allclose(s['old_acc'][1:], [60, 40])

def test_pure_functions():
    assert average_incremental_accuracy([80, 60, 40]) == 60 and average_incremental_accuracy([80, 60, 40], include_first=False) == 50
    assert last_accuracy([80, 60, 40]) == 40
    R = np.array([[90., np.nan], [70., 80.]])
    assert average_forgetting(R) == 20 and backward_transfer(R) == -20
    assert math.isnan(average_forgetting(np.array([[50.]]))) and math.isnan(backward_transfer(np.array([[50.]])))

def test_round_trips_and_errors(m, tmp_path):
    m.update(0, 'nme', *_preds([8]))
    m.to_json(tmp_path / 'm.json'); m.to_csv(tmp_path / 'm.csv')
    m2 = CILMetrics.from_dict(json.loads((tmp_path / 'm.json').read_text()))
    assert np.allclose(m2.R('cnn'), m.R('cnn'), equal_nan=True) and m2.acc('nme').tolist() == [80.0]
    rows = (tmp_path / 'm.csv').read_text().splitlines()
    assert rows[0].startswith('head,phase,n_seen,acc,old,new') and len(rows) == 1 + 3 + 1
    with pytest.raises(CILError): m.update(0, 'cnn', torch.tensor([0, 1]), torch.tensor([0, 1]))   # label 1 not seen after phase 0
    with pytest.raises(CILError): m.R('teacher')
