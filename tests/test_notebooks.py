"""Committed notebooks are already in the form JupyterLab saves, so opening and saving one leaves git clean; and the
explorer's stored outputs in 21_explorer are what the explorer computes from the stored results it reads.

JupyterLab loads a notebook through nbformat on the server, and in the browser its output model merges consecutive
stream outputs of the same name (one `print` a line arrives as many outputs; JupyterLab keeps one), dropping text that
a `\\r` or `\\b` overwrote; it saves with `nbformat.write(nb, version=4)`: sorted keys, indent 1, multi-line strings as
lists of lines, a trailing newline. `python tests/test_notebooks.py` rewrites every notebook in that form."""
import re, sys, json
from pathlib import Path
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb') if not any(q.startswith(('.', '_')) for q in p.relative_to(ROOT / 'nbs').parts))

def _overwrite(s: str) -> str:
    "What a terminal (and JupyterLab) shows of stream text: a `\\r` returns to the line's start, a `\\b` erases a character."
    lines = []
    for line in s.split('\n'):
        line = re.sub(r'[^\n]*\r(?=[^\n])', '', line.rstrip('\r')) if '\r' in line else line
        while '\b' in line: line = re.sub(r'[^\b]?\b', '', line, count=1)
        lines.append(line)
    return '\n'.join(lines)

def jupyterlab_form(text: str) -> str:
    "The file JupyterLab 4 writes when it opens and saves the notebook `text` (nothing edited, no kernel run)."
    nb = nbformat.reads(text, as_version=4)
    for c in nb.cells:
        if c.cell_type != 'code': continue
        outs = []
        for o in c.outputs:
            if o.output_type == 'stream' and outs and outs[-1].output_type == 'stream' and outs[-1].name == o.name:
                outs[-1].text = _overwrite(outs[-1].text + o.text)
            else:
                if o.output_type == 'stream': o.text = _overwrite(o.text)
                outs.append(o)
        c.outputs = outs
    s = nbformat.writes(nb, version=4)
    return s if s.endswith('\n') else s + '\n'

@pytest.mark.parametrize('path', NBS, ids=[p.name for p in NBS])
def test_jupyterlab_round_trip_changes_nothing(path):
    text = path.read_text(encoding='utf-8')
    assert jupyterlab_form(text) == text, f'{path.name} changes when JupyterLab saves it: run python tests/test_notebooks.py'

def test_the_form_is_what_jupyterlab_does():
    "Two prints become one stream output; a bar redrawn with \\r keeps its last state; keys, indent and newline as nbformat writes."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('print(1); print(2)', outputs=[
        nbformat.v4.new_output('stream', name='stdout', text='1\n'), nbformat.v4.new_output('stream', name='stdout', text='2\n'),
        nbformat.v4.new_output('stream', name='stderr', text='10%\r50%\r100%\n')])])
    out = nbformat.reads(jupyterlab_form(json.dumps(nb)), as_version=4)
    test = [(o.name, o.text) for o in out.cells[0].outputs]
    assert test == [('stdout', '1\n2\n'), ('stderr', '100%\n')]
    s = jupyterlab_form(json.dumps(nb))
    assert s.endswith('}\n') and s.startswith('{\n "cells": [\n  {\n') and jupyterlab_form(s) == s

def _stored(nb, marker):
    return [c for c in nb.cells if c.cell_type == 'code' and marker in c.source][0].outputs

def test_the_explorer_outputs_match_the_stored_results():
    "21_explorer's explorer text and snapshot were made from nbs/results/digits_explorer, the files the live explorer reads."
    import os; os.chdir(ROOT / 'nbs')   # the notebook's own folder, as in JupyterLab and nbdev_test
    from cil_nb.explorer import Explorer
    import matplotlib.pyplot as plt
    nb = nbformat.read(ROOT / 'nbs' / '21_explorer.ipynb', as_version=4)
    assert 'widgets' not in nb.metadata   # no widget state from another run (the live widget draws from the files)
    stored = sorted(Path('results/digits_explorer').glob('*/seed*'))
    assert len(stored) == 6 and all((p / 'results.json').exists() for p in stored)
    ex = Explorer(stored, label='icarl seed 0', head='nme', phase=-1, show=False)
    text, = [o for o in _stored(nb, 'ex = Explorer(stored') if o.output_type == 'execute_result']
    assert text.data['text/plain'] == ex._repr_mimebundle_()['text/plain']
    snap = ex.snapshot(); title = snap.axes[1].get_title(); plt.close(snap)
    outs = _stored(nb, 'snap = ex.snapshot()')
    assert [o.text for o in outs if o.output_type == 'stream'] == [title + '\n']
    assert any('image/png' in o.get('data', {}) for o in outs)
    assert re.search(r'after phase 4: \d+\.\d% on 10 classes', title)

def test_the_pre_save_hook_cleans_what_a_kernel_adds():
    """With `nbdev_install_hooks` (README's contributor set-up; settings.ini has jupyter_hooks = True) a save after a kernel
    started (its kernelspec, language_info, trusted flags) writes the committed file back unchanged."""
    from nbdev.clean import clean_jupyter
    p = ROOT / 'nbs' / '10_methods.mnemonics.ipynb'; text = p.read_text(encoding='utf-8')
    content = json.loads(json.dumps(nbformat.reads(text, as_version=4)))
    for c in content['cells']:
        c['source'] = ''.join(c['source']); c['metadata']['trusted'] = True
        for o in c.get('outputs', []):
            if isinstance(o.get('text'), list): o['text'] = ''.join(o['text'])
    content['metadata'].update(kernelspec={'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'},
                               language_info={'name': 'python', 'version': '3.11.7', 'mimetype': 'text/x-python'})
    model = {'type': 'notebook', 'content': content}
    clean_jupyter(path=str(p), model=model)
    assert nbformat.writes(nbformat.from_dict(model['content']), version=4) + '\n' == text

if __name__ == '__main__':
    for p in NBS:
        t = p.read_text(encoding='utf-8'); n = jupyterlab_form(t)
        if n != t: p.write_text(n, encoding='utf-8'); print('rewrote', p.relative_to(ROOT))
