#!/usr/bin/env python3
"""Write README.md from nbs/index.ipynb (a stand-in for `nbdev_readme`, which needs quarto).

Markdown cells are kept as they are. Code cells with a hide/export directive are dropped; the others are shown as
python blocks (directive lines removed) followed by their stored output: markdown output (IPython's `Markdown`) as it
is, text output indented as code; pictures, widgets (progress bars) and stderr are left out. A cell flagged `#| echo: false` shows its output only.
usage: python .ci/make_readme.py           write README.md
       python .ci/make_readme.py --check   exit 1 if README.md is not what index.ipynb gives"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render(nb_path=root / 'nbs' / 'index.ipynb') -> str:
    out = ['<!-- Generated from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file. -->\n']
    for cell in json.loads(Path(nb_path).read_text())['cells']:
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown': out.append(src.strip() + '\n'); continue
        if cell['cell_type'] != 'code': continue
        lines = src.splitlines()
        dirs = {l.lstrip('#| ').split(':')[0].split()[0] for l in lines if l.startswith('#|') and l.lstrip('#| ').strip()}
        if dirs & {'hide', 'export', 'exporti', 'exports', 'default_exp'}: continue
        code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        if not code: continue
        echo = not any(l.replace(' ', '') == '#|echo:false' for l in lines)
        block = f'```python\n{code}\n```\n' if echo else ''
        texts = []
        for o in cell.get('outputs', []):
            if o.get('name') == 'stderr' or any(k.startswith('image/') or 'widget' in k for k in o.get('data', {})): continue
            md = o.get('data', {}).get('text/markdown')
            if md: block += ('\n' if block else '') + ''.join(md).strip() + '\n'; continue
            t = o.get('text') or o.get('data', {}).get('text/plain')
            if t: texts.append(''.join(t).rstrip())
        if texts: block += '\n' + '\n'.join('    ' + l for l in '\n'.join(texts).splitlines()) + '\n'
        if block: out.append(block)
    return '\n'.join(out)

if __name__ == '__main__':
    text, readme = render(), root / 'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit('README.md is stale: run `python .ci/make_readme.py` and commit it')
    else: readme.write_text(text); print('wrote', readme)
