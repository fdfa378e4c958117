"""dropout-tune uncertainty RUN_DIR [RUN_DIR ...] -o OUT: uncertainty methods side by side on a run's test split.

Methods (--methods, comma-separated; default: every method that applies): deterministic (the model in eval mode,
always computed: the baseline), temperature (one temperature fitted on the validation split's NLL), mc (MC dropout
at the rates mc-eval samples: --spec, else the recipe's mc_eval.spec, else its nominal rates), mc+temperature (a
temperature fitted on the validation MC mean log-probabilities), ensemble (the mean probabilities of all the
RUN_DIRs: one recipe run with different seeds; the default with several RUN_DIRs), laplace (last-layer Laplace
over the classification head with laplace-torch; the default when it is installed). Regression tasks: deterministic,
mc and ensemble, scored by MSE and Gaussian NLL. Methods other than ensemble use the first RUN_DIR.

Writes uncertainty.json, uncertainty.md, predictions.npz, reliability.png and risk_coverage.png into OUT; an OUT
that already holds them is refused unless --overwrite (which replaces those files only).

Example:
    dropout-tune uncertainty runs/rt-seed1 runs/rt-seed2 runs/rt-seed3 --samples 20 --ood-task snli -o runs/unc
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("uncertainty", help="compare uncertainty methods (temperature, MC dropout, "
                                                      "ensemble, Laplace) on a run",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (with model/ and "
                                                                       "recipe.yaml); several make an ensemble")
    parser.add_argument("--output", "-o", required=True, help="output directory")
    parser.add_argument("--methods", default=None,
                        help="comma-separated: deterministic, temperature, mc, mc+temperature, ensemble, laplace "
                             "(default: every method that applies)")
    parser.add_argument("--samples", "-T", type=int, default=None,
                        help="MC-dropout passes (default: the run's mc_eval.samples, else 20)")
    parser.add_argument("--spec", default=None, help="MC-dropout roles and rates, e.g. 'attention=0.1,hidden=0.1' "
                                                     "(default: as mc-eval)")
    parser.add_argument("--mode", default=None, choices=("loop", "replicate", "trunk"),
                        help="MC-dropout mode (default: the run's mc_eval.mode, else loop)")
    parser.add_argument("--stochastic-layers", type=int, default=None, metavar="K",
                        help="with --mode trunk: sample only the top K layers and the head")
    parser.add_argument("--ood-task", default=None, help="out-of-distribution task: adds OOD AUROC by predictive "
                                                          "entropy")
    parser.add_argument("--max-examples", type=int, default=None,
                        help="a seeded subset of N validation and test examples (default: the run's data.max_eval)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=None, help="rows per forward in replicate / trunk modes")
    parser.add_argument("--bins", type=int, default=15, help="calibration bins (default: %(default)s)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the MC passes and the bootstrap")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs already in OUT")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..uncertainty import evaluate_uncertainty
    from ..uncertainty.report import markdown

    result = evaluate_uncertainty(
        args.run_dirs, args.output, methods=[args.methods] if args.methods is not None else None,
        samples=args.samples, spec=args.spec, mode=args.mode, stochastic_layers=args.stochastic_layers,
        ood_task=args.ood_task, batch_size=args.batch_size, max_batch=args.max_batch,
        max_examples=args.max_examples, n_bins=args.bins, resamples=args.bootstrap, seed=args.seed,
        device=args.device, overwrite=args.overwrite)
    print(markdown(result))
    print(f"wrote uncertainty.json, uncertainty.md, predictions.npz"
          f"{', reliability.png, risk_coverage.png' if result['problem'] == 'classification' else ''} into "
          f"{args.output}")
    return 0
