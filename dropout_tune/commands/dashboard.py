"""dropout-tune dashboard OUT [--port P]: serve optuna-dashboard over the search in OUT (its storage, the search study
alone: trials, parameters, intermediate values, plots) at http://HOST:P/dashboard/ until Ctrl-C. Works while the
search runs and for searches on several machines (it reads the --storage the search used, from OUT/search.json)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("dashboard", help="browse a search's trials in optuna-dashboard",
                                   description=__doc__)
    parser.add_argument("output", metavar="OUT", help="a tune output directory")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 for others)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..tune.dashboard import serve

    print(f"dashboard of {args.output}: http://{args.host}:{args.port}/dashboard/ (Ctrl-C stops it)", flush=True)
    serve(args.output, host=args.host, port=args.port)
    return 0
