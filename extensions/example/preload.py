"""Command-line flags of the example extension (read after the app's own flags: `--example-note "..."`)."""


def preload(parser):
    parser.add_argument("--example-note", default=None, help="default text of the example's infotext field")
