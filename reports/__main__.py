"""Reports over an output folder.

    python -m reports summary --output out
"""

import argparse
import sys

from reports.summary import summary_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="Row counts, accounting, top topics, bursts")
    summary.add_argument("--output", required=True, help="The pipeline's output folder")
    summary.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)
    if args.command == "summary":
        print(summary_text(args.output, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
