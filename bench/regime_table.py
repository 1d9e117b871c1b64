"""Pool `cil_nb_bench` runs made at several values of a regime variable: one table, one JSON, one plot.

    python bench/regime_table.py OUT.json REGIME=BENCH_OUT [REGIME=BENCH_OUT ...] [--ref lucir] [--plot OUT.png VARIANT,...]

Several BENCH_OUT folders may share a REGIME (their variants are pooled); the regimes keep the order given. Prints
`regime_table`'s markdown, writes `regime_results`' per-seed figures to OUT.json (which the method notebooks plot),
and with --plot draws `plot_regime` for the listed variants."""
import json, sys
from cil_nb.benchmark import regime_results, regime_table, plot_regime

def main(argv):
    ref, plot = 'lucir', None
    if '--ref' in argv: i = argv.index('--ref'); ref = argv[i + 1]; del argv[i:i + 2]
    if '--plot' in argv: i = argv.index('--plot'); plot = (argv[i + 1], argv[i + 2].split(',')); del argv[i:i + 3]
    folders = {}
    for a in argv[1:]:
        regime, folder = a.split('=', 1); folders.setdefault(regime, []).append(folder)
    res = regime_results(folders)
    print(regime_table(res, ref))
    with open(argv[0], 'w') as f: json.dump(res, f, indent=1); f.write('\n')
    if plot: plot_regime(res, plot[1], ref).savefig(plot[0], dpi=110, bbox_inches='tight')

if __name__ == '__main__': main(sys.argv[1:])
