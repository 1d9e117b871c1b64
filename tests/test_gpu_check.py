"""bench/gpu_check.py's parts run and fill its table (at the --cpu smoke sizes, a few of its rows: the whole smoke run is
`bench/gpu_check.sh --cpu`, under 2 minutes on an idle 2-core machine)."""
import sys
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / 'bench'))
import gpu_check as gc

def test_throughput_rows_and_one_paper_run(monkeypatch):
    S = gc.sizes(cpu=True)
    tab = gc.Table(); dev = torch.device('cpu')
    gc.part_a(tab, dev, S)
    assert [r['part'] for r in tab.rows] == ['A'] * 5
    assert all(r['result'].endswith('img/s') or r['result'].startswith('skipped') for r in tab.rows), tab.rows
    monkeypatch.setattr(gc, 'PAPER_METHODS', ['icarl'])
    gc.part_b(tab, dev, S, budget=10_000)
    assert tab.rows[-1]['part'] == 'B' and tab.rows[-1]['result'].startswith('A_avg'), tab.rows[-1]
    assert 'icarl (LUCIR family), paper preset, B5 + 1 x 5' in tab.rows[-1]['what']
    md = tab.markdown('head')
    assert md.count('\n| A |') == 5 and md.count('\n| B |') == 1

def test_over_budget_rows_are_skipped():
    tab = gc.Table()
    gc.part_b(tab, torch.device('cpu'), gc.sizes(cpu=True), budget=-1)
    assert len(tab.rows) == len(gc.PAPER_METHODS) and all(r['result'] == 'skipped: over the time budget' for r in tab.rows)
